// Command ta is Coffer's Trusted Applet: the vault (applet/vault) on the
// record store (applet/store), running in Secure World user mode under the
// Trusted OS (firmware/os), built with GOOS=tamago.
//
// It never touches hardware. Everything comes from the OS through the calls
// of firmware/api (see applet/runtime): its configuration and sealing key
// once at start, the store's sectors, the RPMB frames of the store's anchor,
// randomness, and the protocol requests, which it answers one by one with
// Vault.Handle.
//
// At start it opens the store (formatting it if the anchor has never been
// written, programming the RPMB key if the partition has none), opens or
// creates the vault, and reports ready. If the store fails its integrity
// check (for example an older copy of the store under a newer anchor) it
// still reports ready, and answers every request with a "tampered: service
// refused" error rather than serve stale data. On an emulated board it signs
// its own identity bundle with the board's development provisioning key.
//
// The logic is portable (applet.go) and is tested in-process against the
// OS's portable core; main_tamago.go is the entry point on the device.
package main
