// Package opaque is the vault's side of OPAQUE-3DH (RFC 9807) with the
// ristretto255-SHA512 suite: registration responses, credential responses
// (KE2) and the check of the client's key confirmation (KE3).
//
// Why it exists: the reference Go implementation, github.com/bytemare/opaque,
// does not compile for 32-bit ARM (its key-stretching dependency overflows int),
// and the vault runs as a TamaGo Trusted Applet on a Cortex-A7. This package is
// written from the RFC on top of github.com/cloudflare/circl (oprf, group) and
// the standard library, so the same code runs on the device, in QEMU and on a
// PC. It interoperates with bytemare's client, which the product's client uses;
// the tests prove that against bytemare, against the RFC's test vectors, and
// against Coffer's configuration's vectors made by bytemare
// (testdata/vectors), which also run on 32-bit ARM.
//
// Differences from a textbook server, all allowed by RFC 9807:
//
//   - The OPRF key is an explicit OPRFKey rather than always derived from a
//     global seed. The vault draws a fresh random key per registration
//     (NewOPRFKey) and stores it in the sealed record, so one leaked seed does
//     not expose every user. DeriveOPRFKey keeps the RFC's derivation for fake
//     records and the test vectors.
//   - Randomness comes from the caller's io.Reader (the device's TRNG on
//     hardware), consumed in the order the RFC lists the values, so a scripted
//     reader reproduces the RFC vectors.
//   - Unknown users get a FakeRecord that is stable per credential identifier
//     (RFC 9807 section 10.9), so answering for them costs the same work and
//     looks the same on the wire.
//
// The client half in client.go is deliberately minimal: it exists for tests
// and 32-bit builds (the vault's tests must run under qemu-arm where bytemare
// cannot), not as the product's client.
//
// Secrets: MACs are compared with hmac.Equal, secret byte slices in the server
// state are overwritten once used, and errors never carry secret values.
// Every function that parses outside bytes returns an error, never panics, and
// rejects the identity element and non-canonical encodings.
package opaque
