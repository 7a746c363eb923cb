package opaque

import (
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
)

// g is the prime-order group of the suite, for both the OPRF and the AKE.
var g = group.Ristretto255

// decodeElement is RFC 9807's DeserializeElement: it accepts only the
// canonical 32-byte encoding of a ristretto255 element other than the
// identity. The identity is rejected because multiplying it by a secret
// yields the identity again, so a peer that sends it learns or forces a
// known value (RFC 9497 section 2.1, RFC 9807 section 6.2).
func decodeElement(b []byte, what string) (group.Element, error) {
	if len(b) != ElementSize {
		return nil, malformed(what, len(b), ElementSize)
	}
	e := g.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, invalidElement(what)
	}
	if e.IsIdentity() {
		return nil, invalidElement(what)
	}
	// Non-canonical encodings (field value >= p, negative s) are rejected
	// by the decoder itself (RFC 9496 section 4.3.1); the bad-input tests
	// pin that down, so a library change that relaxed it would fail them.
	// The raw bytes enter transcripts, so a second encoding of the same
	// element would give a peer a second transcript.
	return e, nil
}

// encodeElement is SerializeElement. Ristretto255 encoding cannot fail.
func encodeElement(e group.Element) []byte {
	b, err := e.MarshalBinaryCompress()
	if err != nil {
		panic("opaque: ristretto255 encoding failed: " + err.Error())
	}
	return b
}

// decodeScalar accepts only the canonical little-endian encoding of a
// non-zero scalar: a zero key would map every input to the identity.
func decodeScalar(b []byte, what string) (group.Scalar, error) {
	s := g.NewScalar()
	if len(b) != ScalarSize || s.UnmarshalBinary(b) != nil || s.IsZero() {
		return nil, fmt.Errorf("%w: %s", ErrInvalidScalar, what)
	}
	return s, nil
}

// encodeScalar is SerializeScalar.
func encodeScalar(s group.Scalar) [ScalarSize]byte {
	var out [ScalarSize]byte
	b, err := s.MarshalBinary()
	if err != nil || len(b) != ScalarSize {
		panic("opaque: ristretto255 scalar encoding failed")
	}
	copy(out[:], b)
	wipe(b)
	return out
}

// wipeScalar overwrites a secret scalar in place (best effort, see wipe).
func wipeScalar(s group.Scalar) {
	if s != nil {
		s.SetUint64(0)
	}
}

// maxScalarTries bounds rejection sampling. One draw is accepted with
// probability about 1/2, so failing 128 times in a row means the reader
// is broken, not unlucky.
const maxScalarTries = 128

// randomScalar draws a uniform non-zero scalar from rand by rejection
// sampling: 32 bytes with the top three bits cleared are below 2^253, and
// are kept only when they are already a canonical scalar (below the group
// order, about 2^252). circl's RandomScalar for ristretto255 ignores its
// reader and always uses crypto/rand, so it cannot use the device's TRNG
// nor replay the RFC vectors; this sampler does both, and returns an
// unchanged canonical scalar when fed one (the vectors' blinds).
func randomScalar(rand io.Reader) (group.Scalar, error) {
	if rand == nil {
		return nil, fmt.Errorf("%w: nil randomness source", ErrInvalidArgument)
	}
	var buf [ScalarSize]byte
	defer wipe(buf[:])
	s := g.NewScalar()
	for range maxScalarTries {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRandom, err)
		}
		buf[ScalarSize-1] &= 0x1f
		if s.UnmarshalBinary(buf[:]) == nil && !s.IsZero() {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: no scalar after %d draws", ErrRandom, maxScalarTries)
}

// readRandom fills a fresh slice of n bytes from rand.
func readRandom(rand io.Reader, n int) ([]byte, error) {
	if rand == nil {
		return nil, fmt.Errorf("%w: nil randomness source", ErrInvalidArgument)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRandom, err)
	}
	return b, nil
}

// deriveKeyPair is RFC 9497's DeriveKeyPair for the OPRF suite
// ristretto255-SHA512 in base mode, which RFC 9807 uses both for OPRF keys
// (info "OPAQUE-DeriveKeyPair") and, via DeriveDiffieHellmanKeyPair, for AKE
// keys (info "OPAQUE-DeriveDiffieHellmanKeyPair").
func deriveKeyPair(seed []byte, info string) (group.Scalar, group.Element, error) {
	if len(seed) != SeedSize {
		return nil, nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrInvalidArgument, len(seed), SeedSize)
	}
	sk, err := oprf.DeriveKey(oprf.SuiteRistretto255, oprf.BaseMode, seed, []byte(info))
	if err != nil {
		// Only when 256 derivation attempts all give zero: negligible.
		return nil, nil, fmt.Errorf("%w: DeriveKeyPair: %v", ErrInvalidArgument, err)
	}
	skBytes, err := sk.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: DeriveKeyPair: %v", ErrInvalidArgument, err)
	}
	// circl's PrivateKey keeps its own copy of the scalar, which we cannot
	// overwrite; it becomes garbage when this function returns.
	defer wipe(skBytes)
	s := g.NewScalar()
	if err := s.UnmarshalBinary(skBytes); err != nil {
		return nil, nil, fmt.Errorf("%w: DeriveKeyPair output", ErrInvalidScalar)
	}
	return s, g.NewElement().MulGen(s), nil
}

// deriveDiffieHellmanKeyPair is RFC 9807's DeriveDiffieHellmanKeyPair.
func deriveDiffieHellmanKeyPair(seed []byte) (group.Scalar, group.Element, error) {
	return deriveKeyPair(seed, labelDeriveDHKeyPair)
}

// diffieHellman is the suite's DiffieHellman(k, B): the encoding of k*B.
func diffieHellman(k group.Scalar, b group.Element) []byte {
	return encodeElement(g.NewElement().Mul(b, k))
}
