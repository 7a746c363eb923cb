// Package storage holds the contracts between the record store and what it
// is stored on: the block Device and its SectorSize and range check, the
// monotonic Anchor, and the eMMC RPMB partition that keeps the anchor on
// hardware (the frame codec, the transport, the authenticated client
// RPMBAnchor).
//
// It exists so that the boards, the Trusted OS and the applet's runtime,
// which provide or carry these things, share one definition of them with the
// record store (applet/store) without depending on the store itself: each
// of them imports only this leaf package, which imports nothing of Coffer's.
// Emulations of the devices live apart: internal/storage/emulate for the
// emulated boards and the software vault, applet/store/storetest for tests.
package storage
