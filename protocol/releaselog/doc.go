// Package releaselog is the contract of Coffer's release log
// (protocol/RELEASES.md): the entries it holds (firmware releases, vault
// identity bundles, revocations), the policy a verifier pins (the log's
// release key and k of n witnesses), and the checks every verifier makes:
// a checkpoint signed by the release key and cosigned by a quorum of
// witnesses (C2SP tlog-checkpoint, tlog-cosignature), an entry's inclusion
// in it (the boot chain's proof bundle), and a View that follows the log
// and refuses any checkpoint inconsistent with the last one it accepted.
//
// It holds no writer and no network code, and builds for the firmware
// (GOOS=tamago): the bootloader verifies proof bundles with it. The log is
// written with transparency-dev/tessera (firmware/cmd/coffer-release) and
// served by cofferd, which is untrusted: nothing it serves is believed
// before it verifies here.
package releaselog
