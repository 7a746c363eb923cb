// Package softvault is Coffer's vault as an ordinary program: the vault
// logic and record store of the firmware, kept in a state folder, served over
// the framing protocol on a unix socket or loopback TCP (protocol/transport).
// cofferd reaches it there like any other vault: the host daemon links no
// vault code.
//
// It is INSECURE by construction and says so in its identity bundle and when
// it serves: its keys live in files that whoever runs it can read, and its
// monotonic anchor is a file the host can roll back together with the store.
//
// One process at a time has a state folder's vault open: it holds the
// folder's lock (flock on DIR/lock, which names it), and any other process
// that would open the vault there — a second server, a test's in-process
// vault, init, identity, install — is refused with that name instead of
// committing over its records.
//
// The command is cmd/softvault. Provisioning a vault (a provisioning key,
// signing its identity) is firmware/cmd/coffer-provision's job; `softvault
// dev` only self-provisions with a development key kept beside the vault.
package softvault
