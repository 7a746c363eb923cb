// Package soak is a load soak of cofferd in front of a software vault: many
// concurrent clients log in, guess wrong, change passwords and get locked
// out through cofferd's HTTP API for a long time, while every exchange is
// accounted for against the vault's own signed receipts.
//
// The driver keeps, per account, a model of the vault's counting rules
// (protocol/SPEC.md, "Counting"): attempts counted, the watermark a
// confirmed login moves, successes, the limit. It reads every attempt
// receipt as it crosses the HTTP boundary, so each answered guess is
// checked against the vault's attempts_total the moment it is answered,
// and every release, change and registration receipt against the model.
// Refusals must be explicit backpressure (HTTP 429 or 503, or the vault's
// busy code); anything else — a timeout, a dropped connection, a 5xx, an
// unexpected vault error — is a failure. At the end the driver stops the
// clients, checks every account with one more login, kills the vault
// process (SIGKILL), starts it again on the same state folder and checks
// every account once more: an acknowledged commit that did not survive
// shows up as a total lower than the model's.
//
// The clients are of two kinds. Most speak the protocol with
// applet/vault/vaulttest/testclient and stretch passwords with the real Argon2id of
// SPEC.md, each distinct input computed once (the stretch is a
// deterministic function of the OPRF output, which is fixed per
// registration and password, so a cached result is exactly what a fresh
// computation gives) and at most a few at a time: two hundred 64 MiB
// computations at once would not fit. A few use the product client library
// (client/) unchanged, with its own uncached Argon2id, one at a time.
//
// TestSoakHost runs the soak when COFFER_SOAK_DURATION is set (make
// soak-host); TestSoakSmoke runs a few seconds of it in the ordinary test
// suite.
package soak
