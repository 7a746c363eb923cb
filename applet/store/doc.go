// Package store is the vault's durable record store: one sealed record per
// user id, kept in a Merkle-authenticated, copy-on-write tree on a block
// device and anchored after every commit in a monotonic anchor with RPMB
// semantics. It implements the vault's Store interface (applet/vault).
//
// It is portable Go: the same code runs in the Trusted Applet (on the OS's
// eMMC sectors as a storage.Device and the OS's anchor, which the Trusted OS
// keeps with a storage.RPMBAnchor on its RPMB partition), under QEMU, and
// natively as the software vault (emulate.FileDevice and
// emulate.FileAnchor). What it is stored on is defined apart, in
// internal/storage, so that the boards and the OS that provide it need not
// import the store; the emulated devices are in internal/storage/emulate and
// the test devices (memory, power cuts) in applet/store/storetest.
//
// # Design
//
// Records and tree nodes are each sealed (ChaCha20-Poly1305) under a fresh
// random key that exists only in the parent node's entry, next to the
// SHA-256 of the child's on-disk bytes. The root's key and hash are in the
// anchor, sealed under a key derived from the device sealing key. So:
//
//   - every read checks its path of hashes up to the anchored root; any
//     block that is old, foreign, swapped or flipped fails
//     (storage.ErrTampered);
//   - a commit writes new copies of the changed records and of their
//     ancestors into free space, flushes, and then writes the anchor once:
//     a power cut before the anchor write leaves the previous tree, after it
//     the new one, never a mix;
//   - overwriting the anchor destroys the only copy of the previous root
//     key, which made every superseded node and record readable: erasure is
//     cryptographic, at the cost of the commit's path (O(height) blocks),
//     whatever flash remapping or copy-on-write left behind;
//   - free space is not stored: Open walks the tree (verifying it) and
//     everything it does not reach is free. Sectors a commit supersedes are
//     reused once the next anchor is written.
//
// Commits are grouped: Commit wakes a single committer goroutine, which
// writes everything staged since the last commit with one flush and one
// anchor write, at most once per Options.MinAnchorInterval.
//
// # What is and is not detected
//
// With a real RPMB anchor, the store detects any change to the block device
// made behind its back: a restored old record, a restored old copy of the
// whole device, swapped records, bit flips, a wiped device (the anchor says
// a store exists, so Open refuses rather than reformat). It then refuses to
// serve the data concerned.
//
// Off hardware (the software vault, QEMU) the anchor is an emulated RPMB: a file
// the host controls. The host can restore old copies of the store and the
// anchor file together, and that cannot be detected: the software and QEMU
// vaults detect rollback of the store, not of store and anchor together.
// Clients keep the highest store sequence they have seen, which narrows but
// does not close this gap. See FORMAT.md.
package store
