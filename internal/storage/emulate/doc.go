// Package emulate stands in for storage hardware where there is none: an
// RPMB partition emulated in memory or in a host file (RPMBEmulator,
// FileRPMB, FileAnchor), a block device on a host file (FileDevice), and a
// host file in memory (MemFile) for tests of all of these and of the QEMU
// board, whose semihosting file it behaves like. The software vault
// (applet/softvault) and the QEMU board (board/qemu) use it; tests use it
// through applet/store/storetest, or MemFile directly.
//
// Nothing here is replay protected against whoever controls the host files:
// an emulated vault detects rollback of its store, not of the store and the
// emulated RPMB together (applet/store FORMAT.md, "Threat model").
package emulate
