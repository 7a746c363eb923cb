// Package realmkey is the cryptography of a realm set (protocol/REALMS.md,
// section 5): a threshold VOPRF (RFC 9497 verifiable mode, ristretto255-SHA512)
// whose key k is Shamir-shared among n realms with Feldman commitments, and
// the key schedule that turns its output into the check value, the export
// key that wraps K, the per-realm unlock keys, tags and session secrets, and
// the set's anchor key and set code (5.2-5.6).
//
// Both the vault (realm side: CheckShare, EvaluateBlinded) and the client
// (Deal, Blind, VerifyEvaluation, Finalize, the Schedule) import it. The
// untrusted host daemon never does: it links no trusted code.
//
// It is written on cloudflare/circl's group (ristretto255) and zk/dleq, and
// does by hand what circl v1.6.x does not check (REALMS.md 5.1):
//
//   - An element decode accepts the all-zero identity: every decoded or
//     computed element that matters (Bl, E_i, each C_j, each Y_i, N) is
//     refused when it is the identity (ErrIdentity).
//   - A scalar decode accepts zero: a zero share, blind, coefficient or proof
//     nonce is refused (ErrZeroScalar).
//   - Scalar.Inv(0) returns 0: Lagrange checks the indices are distinct and
//     in 1..MaxRealms, and every difference nonzero, before any inversion.
//   - RandomScalar ignores its reader: reproducible vectors go through
//     DealFromCoefficients, DeterministicBlind and
//     EvaluateBlindedWithRandomness, never through an io.Reader.
//   - secretsharing.Recover is never called; nobody reconstructs k.
//   - oprf's client cannot verify t proofs under t keys nor expose its
//     Finalize hash, so unblinding and Finalize are written here on group
//     operations, and the tests check them against circl's oprf server.
//   - zk/dleq's prover computes ρ·G as a variable-base multiplication; the
//     proof is made here (proveEvaluation, RFC 9497 section 2.2.1) with
//     MulGen instead, and checked byte for byte against the RFC's vector
//     and circl's prover. Proofs are verified with circl's verifier.
package realmkey
