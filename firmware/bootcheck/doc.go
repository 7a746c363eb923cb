// Package bootcheck is the bootloader's decision, kept apart from the
// hardware so that it is tested on any machine: given the release log's
// policy compiled into the bootloader, the board's release name, the OS
// image and its proof bundle read from boot storage, and the minimum
// release version kept in RPMB, Check says whether the OS may boot and what
// to tell it (tos.BootInfo), or why not.
//
// The OS boots only if all of these hold:
//
//  1. the proof bundle's checkpoint is signed by the policy's release key
//     and cosigned by at least Quorum of its witnesses, and the entry is
//     included in that checkpoint's tree (releaselog.Policy.VerifyProof);
//  2. the entry is a release for this board;
//  3. its Firmware hash is the SHA-256 of the OS image as read;
//  4. its Version is not below the minimum in RPMB (no downgrade).
//
// The boot info carries the OS hash, the release's Version and the release
// key's ID (ReleaseKeyID: a hash of the key's name and public key, however
// the policy spells them), under which the OS derives its store key
// (tos.DeriveKeys).
package bootcheck
