// Package witness is a transparency-log witness (C2SP tlog-witness): it
// keeps, for every log it is configured with, the size and root of the
// newest checkpoint it cosigned, and cosigns a new checkpoint of that log
// only when the log's release key signed it and a Merkle consistency proof
// shows the new tree extends the one it cosigned before. A log that forks
// (shows two trees of one size, or a tree that does not extend the last)
// or rolls back is refused, across restarts: the state is written to disk,
// atomically, before the cosignature leaves.
//
// Coffer's release log (protocol/RELEASES.md) requires k of n witnesses to
// cosign each checkpoint (tlog-cosignature, cosignature/v1) before a client
// or the bootloader believes it; firmware/cmd/coffer-witness serves this
// package over HTTP, and the log's writer (internal/releasewriter, through
// tessera) calls its add-checkpoint endpoint.
package witness
