// Package emulate stands in for storage hardware where there is none: an
// RPMB partition emulated in memory or in a host file (RPMBEmulator,
// FileRPMB, FileAnchor) and a block device on a host file (FileDevice). The
// software vault (applet/softvault) and the QEMU board (board/qemu) use it;
// tests use it through applet/store/storetest.
//
// Nothing here is replay protected against whoever controls the host files:
// an emulated vault detects rollback of its store, not of the store and the
// emulated RPMB together (applet/store FORMAT.md, "Threat model").
package emulate
