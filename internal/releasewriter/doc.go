// Package releasewriter writes Coffer's release log (protocol/RELEASES.md):
// a C2SP tlog-tiles log in a folder, kept by transparency-dev/tessera's
// POSIX driver, whose checkpoints the release key signs and k of n
// witnesses cosign (C2SP tlog-witness, through tessera's witness group,
// failing closed).
//
// Add returns only once the entry is integrated and a checkpoint covering
// it, verified against the log's releaselog.Policy (the release signature
// and the quorum of cosignatures), is published. When the quorum does not
// answer, Add fails naming the witnesses that did not cosign, and no
// checkpoint without them is published: the entry stays sequenced and the
// next witnessed checkpoint covers it (Add of the same entry again waits
// for that, rather than logging it twice).
//
// Refresh has the unchanged checkpoint cosigned again (tessera republishes
// it every Config.RepublishInterval): a log that adds nothing stays fresh
// for verifiers whose policy has a max-age.
//
// Proof builds the proof bundle (releaselog.Proof) the bootloader checks,
// from the log's own tiles and its published checkpoint; Read does the same
// for a log folder opened read-only (no key, no witnesses). Only the log's
// operator runs this (firmware/cmd/coffer-release); everyone else verifies
// with protocol/releaselog.
package releasewriter
