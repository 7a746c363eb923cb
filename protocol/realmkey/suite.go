package realmkey

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"

	"github.com/cloudflare/circl/group"
)

// ContextString is RFC 9497's context string for verifiable mode (0x01) with
// ristretto255-SHA512; every DST of the VOPRF and its proofs derives from it.
const ContextString = "OPRFV1-\x01-ristretto255-SHA512"

// Sizes of the encodings this package reads and writes.
const (
	ElementSize = 32 // ristretto255 element
	ScalarSize  = 32 // ristretto255 scalar, little endian, canonical
	ProofSize   = 64 // DLEQ proof c ‖ s
	OutputSize  = 64 // VOPRF output y (SHA-512)
	MaxRealms   = 8  // n ≤ 8; realm indices are 1..MaxRealms
)

// Errors. None carries secret material.
var (
	ErrIdentity   = errors.New("realmkey: group element is the identity")
	ErrZeroScalar = errors.New("realmkey: scalar is zero")
	ErrIndex      = errors.New("realmkey: realm indices must be distinct and in 1..8")
	ErrProof      = errors.New("realmkey: evaluation proof does not verify")
	ErrShare      = errors.New("realmkey: share does not match the commitments")
	ErrEncoding   = errors.New("realmkey: not a canonical ristretto255 encoding of the right length")
	ErrThreshold  = errors.New("realmkey: threshold and realm count must satisfy 2 ≤ n ≤ 8 and n/2 < t ≤ n")
)

var suite = group.Ristretto255

const (
	hashToGroupDST = "HashToGroup-" + ContextString
	inputLabel     = "coffer/v1 realm"
	finalizeLabel  = "Finalize"
	maxInputSize   = 1<<16 - 1 // RFC 9497 encodes len(input) in two bytes
)

// Input is the VOPRF input of a realm set: "coffer/v1 realm" ‖ 0x00 ‖
// lp(set_id) ‖ pw (REALMS.md 5.2). It panics if set_id is longer than 255
// bytes, which no set can be (set ids are 16 bytes).
func Input(setID, password []byte) []byte {
	if len(setID) > 255 {
		panic("realmkey: set id longer than 255 bytes")
	}
	in := make([]byte, 0, len(inputLabel)+2+len(setID)+len(password))
	in = append(in, inputLabel...)
	in = append(in, 0, byte(len(setID)))
	in = append(in, setID...)
	return append(in, password...)
}

// hashToGroup is RFC 9497's HashToGroup for this suite; RFC 9497 refuses an
// input that maps to the identity.
func hashToGroup(input []byte) (group.Element, error) {
	if len(input) > maxInputSize {
		return nil, errors.New("realmkey: input longer than 65535 bytes")
	}
	p := suite.HashToElement(input, []byte(hashToGroupDST))
	if p.IsIdentity() {
		return nil, ErrIdentity
	}
	return p, nil
}

// finalizeHash is RFC 9497's Finalize hash:
// SHA-512(I2OSP(len(input),2) ‖ input ‖ I2OSP(32,2) ‖ N ‖ "Finalize").
func finalizeHash(input []byte, n group.Element) []byte {
	enc := mustMarshal(n)
	h := sha512.New()
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(input)))
	h.Write(l[:])
	h.Write(input)
	binary.BigEndian.PutUint16(l[:], uint16(len(enc)))
	h.Write(l[:])
	h.Write(enc)
	h.Write([]byte(finalizeLabel))
	return h.Sum(nil)
}

// decodeElement reads a canonical, non-identity element.
func decodeElement(b []byte) (group.Element, error) {
	if len(b) != ElementSize {
		return nil, ErrEncoding
	}
	e := suite.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, ErrEncoding
	}
	if e.IsIdentity() {
		return nil, ErrIdentity
	}
	return e, nil
}

// decodeScalar reads a canonical, nonzero scalar.
func decodeScalar(b []byte) (group.Scalar, error) {
	if len(b) != ScalarSize {
		return nil, ErrEncoding
	}
	s := suite.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, ErrEncoding
	}
	if s.IsZero() {
		return nil, ErrZeroScalar
	}
	return s, nil
}

// usableScalar reports whether a caller's scalar is a nonzero ristretto255
// scalar (a nil or foreign scalar is refused as zero).
func usableScalar(s group.Scalar) bool {
	return s != nil && s.Group() == suite && !s.IsZero()
}

// mustMarshal encodes an element; ristretto255 encoding cannot fail.
func mustMarshal(e group.Element) []byte {
	b, err := e.MarshalBinaryCompress()
	if err != nil {
		panic("realmkey: ristretto255 element encoding failed: " + err.Error())
	}
	return b
}

// mustMarshalScalar encodes a scalar; ristretto255 encoding cannot fail.
func mustMarshalScalar(s group.Scalar) []byte {
	b, err := s.MarshalBinary()
	if err != nil {
		panic("realmkey: ristretto255 scalar encoding failed: " + err.Error())
	}
	return b
}

// scalarOf is the scalar x_i of a realm index.
func scalarOf(i int) group.Scalar {
	return suite.NewScalar().SetUint64(uint64(i))
}

// wipe zeroes b.
func wipe(b []byte) {
	clear(b)
}
