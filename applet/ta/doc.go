// Command ta is Coffer's Trusted Applet: the vault (applet/vault) on the
// record store (applet/store), running in Secure World user mode under the
// Trusted OS (firmware/os), built with GOOS=tamago.
//
// It never touches hardware. Everything comes from the OS through the calls
// of firmware/api (see applet/runtime): its configuration and the store's
// sealing key (derived by the OS for that one purpose) once at start, the
// store's sectors, the store's anchor (one block the OS keeps in its RPMB
// partition and authenticates; the applet never holds the RPMB key and
// never sends an RPMB frame), randomness, and the protocol requests, which
// it answers one by one with Vault.Handle.
//
// At start it opens the store and the vault with applet/startup: on the
// first boot it formats the store and creates the vault's identity, and a
// first boot cut short by a power failure is completed at the next; a store
// that holds records is never reformatted. If the store or the anchor fails
// its integrity checks (an older copy of the store under a newer anchor, an
// RPMB partition the OS found tampered with) it still reports ready, and
// answers every request with a "tampered: service refused" error rather
// than serve stale data. On an emulated board it signs
// its own identity bundle with the board's development provisioning key.
//
// The logic is portable (applet.go) and is tested in-process against the
// OS's portable core; main_tamago.go is the entry point on the device.
package main
