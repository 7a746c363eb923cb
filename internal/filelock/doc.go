// Package filelock takes exclusive advisory locks (flock) on files, for the
// programs that keep state in files on a host: cofferd's accounts file and
// the software vault's state folder. It is neutral ground: the untrusted
// daemon (host) and the vault code (applet) both use it without importing
// each other.
//
// The locks are advisory: they keep cooperating processes (two `cofferd
// account` commands, two software vaults on one folder) apart, not an
// attacker. A lock ends with its process, so a crash leaves no stale lock.
// On systems without flock every call fails, rather than pretend to lock.
package filelock
