// Package protocol is Coffer's wire contract: the CBOR messages exchanged
// between a client, the untrusted host daemon and a vault, the framing that
// carries them over a byte stream, the error codes, and the key schedule of
// the two encrypted channels (the HPKE registration channel and the sealed
// session that follows a login).
//
// Both ends import this package, so everything here is portable Go that
// builds for the vault (tamago/arm) as well as for hosts and clients. The
// normative description is SPEC.md beside this file; test vectors live in
// testdata/vectors, one file per case with the outcome a receiver must
// reach, written by an independent generator.
//
// Decoding is strict on purpose: the bytes come from the host, which is an
// active attacker. Duplicate map keys, unknown fields, indefinite lengths,
// tags, trailing bytes, byte strings of the wrong length, missing fields and
// optional fields present but empty are all rejected with ErrMalformed,
// never silently repaired: a message decodes only from its one encoding.
package protocol
