package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

// cat joins byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// nonCanonical returns hand-made encodings of real messages that decode to
// the same values as the canonical ones but break core deterministic
// encoding (RFC 8949 §4.2.1), each in one way.
func nonCanonical(t testing.TB) map[string][]byte {
	ke1 := seq(KE1Size, 1)
	user := []byte("alice")
	// LoginStart = {1: user_id, 2: ke1}
	body := cat([]byte{0xa2, 0x01, 0x45}, user, []byte{0x02, 0x58, KE1Size}, ke1)
	env := func(body []byte) []byte { return cat([]byte{0xa3, 0x01, 0x01, 0x02, 0x04, 0x03}, body) }
	canonical, err := Encode(TypeLoginStart, &LoginStart{UserID: user, KE1: ke1})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(env(body), canonical) {
		t.Fatalf("the hand-made canonical encoding is wrong:\n%x\n%x", env(body), canonical)
	}
	return map[string][]byte{
		"version as a one-byte-argument int": cat([]byte{0xa3, 0x01, 0x18, 0x01, 0x02, 0x04, 0x03}, body),
		"type as a two-byte int":             cat([]byte{0xa3, 0x01, 0x01, 0x02, 0x19, 0x00, 0x04, 0x03}, body),
		"map key as a long int":              cat([]byte{0xa3, 0x18, 0x01, 0x01, 0x02, 0x04, 0x03}, body),
		"envelope keys unsorted":             cat([]byte{0xa3, 0x02, 0x04, 0x01, 0x01, 0x03}, body),
		"envelope map length in a long form": cat([]byte{0xb8, 0x03, 0x01, 0x01, 0x02, 0x04, 0x03}, body),
		"body keys unsorted":                 env(cat([]byte{0xa2, 0x02, 0x58, KE1Size}, ke1, []byte{0x01, 0x45}, user)),
		"user id length in a long form":      env(cat([]byte{0xa2, 0x01, 0x58, 0x05}, user, []byte{0x02, 0x58, KE1Size}, ke1)),
		"ke1 length in a two-byte form":      env(cat([]byte{0xa2, 0x01, 0x45}, user, []byte{0x02, 0x59, 0x00, KE1Size}, ke1)),
		"version as simple value 1":          cat([]byte{0xa3, 0x01, 0xe1, 0x02, 0x04, 0x03}, body),
		"type as a float":                    cat([]byte{0xa3, 0x01, 0x01, 0x02, 0xf9, 0x44, 0x00, 0x03}, body),
		// An error reply {1: 11, 2: null}: null would read as an empty message.
		"null for an absent field": {0xa3, 0x01, 0x01, 0x02, 0x00, 0x03, 0xa2, 0x01, 0x0b, 0x02, 0xf6},
	}
}

// Messages that are not in core deterministic encoding are refused, though
// they decode to valid values: SPEC.md promises one encoding per message,
// and signatures and hashes over encodings rely on it.
func TestNonCanonicalEncodingsAreRefused(t *testing.T) {
	for name, b := range nonCanonical(t) {
		var m LoginStart
		if err := Decode(b, TypeLoginStart, &m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

// A signed body is checked as well: a status whose signed bytes encode the
// store sequence in a long form is refused even though its signature holds.
func TestNonCanonicalSignedBodyIsRefused(t *testing.T) {
	key := ed25519.NewKeyFromSeed(seq(32, 0x10))
	nonce := seq(StatusNonceSize, 0xa0)
	good, err := SignStatus(key, &Status{Version: Version, StoreSequence: 42, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := good.Verify(key.Public().(ed25519.PublicKey), nonce); err != nil {
		t.Fatal(err)
	}
	// {1: 1, 2: 42, ...}: 42 is 0x18 0x2a; make it 0x19 0x00 0x2a.
	i := bytes.Index(good.Body, []byte{0x02, 0x18, 0x2a})
	if i < 0 {
		t.Fatalf("no store sequence in %x", good.Body)
	}
	body := cat(good.Body[:i], []byte{0x02, 0x19, 0x00, 0x2a}, good.Body[i+3:])
	bad := StatusReply{Body: body, Signature: ed25519.Sign(key, withContext(contextStatus, body))}
	if _, err := bad.Verify(key.Public().(ed25519.PublicKey), nonce); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a non-canonical signed status was accepted: %v", err)
	}
}

// errNotJudged marks items walkCanonical does not judge (floats, tags,
// simple values other than false and true, integers below -2^63): messages
// never hold them.
var errNotJudged = errors.New("not judged")

// walkCanonical is an independent check of core deterministic encoding,
// written from RFC 8949 §4.2.1 rather than through the CBOR library: every
// argument in its shortest form, definite lengths only, map keys in
// strictly increasing bytewise order of their encodings, nothing after the
// top-level item. The fuzz target holds checkCanonical to it.
func walkCanonical(b []byte) error {
	rest, err := walkItem(b)
	if err == nil && len(rest) > 0 {
		err = errors.New("trailing bytes")
	}
	return err
}

func walkItem(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("truncated")
	}
	major, ai := b[0]>>5, b[0]&0x1f
	b = b[1:]
	var arg uint64
	switch {
	case ai < 24:
		arg = uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24) // 1, 2, 4 or 8 bytes
		if len(b) < n {
			return nil, errors.New("truncated argument")
		}
		for _, c := range b[:n] {
			arg = arg<<8 | uint64(c)
		}
		b = b[n:]
		if major == 7 && ai > 24 {
			return nil, errNotJudged // a float
		}
		if min := [...]uint64{24, 1 << 8, 1 << 16, 1 << 32}[ai-24]; arg < min {
			return nil, errors.New("argument not in its shortest form")
		}
	default:
		return nil, errors.New("indefinite length or reserved")
	}
	switch major {
	case 0:
		return b, nil
	case 1:
		if arg >= 1<<63 {
			return nil, errNotJudged // below -2^63: no message holds one
		}
		return b, nil
	case 2, 3:
		if uint64(len(b)) < arg {
			return nil, errors.New("truncated string")
		}
		return b[arg:], nil
	case 4:
		var err error
		for i := uint64(0); i < arg; i++ {
			if b, err = walkItem(b); err != nil {
				return nil, err
			}
		}
		return b, nil
	case 5:
		var prev []byte
		for i := uint64(0); i < arg; i++ {
			rest, err := walkItem(b)
			if err != nil {
				return nil, err
			}
			key := b[:len(b)-len(rest)]
			if prev != nil && bytes.Compare(prev, key) >= 0 {
				return nil, errors.New("map keys not in increasing order")
			}
			prev = key
			if b, err = walkItem(rest); err != nil {
				return nil, err
			}
		}
		return b, nil
	case 6:
		return nil, errNotJudged // a tag
	default: // 7
		if ai == 20 || ai == 21 { // false, true
			return b, nil
		}
		return nil, errNotJudged
	}
}

func TestWalkCanonicalAgreesOnTheHandMadeCases(t *testing.T) {
	for name, b := range nonCanonical(t) {
		if err := walkCanonical(b); err == nil {
			t.Errorf("%s: the independent check accepts it", name)
		}
	}
	for _, v := range testVectors(t) {
		if err := walkCanonical(v); err != nil {
			t.Errorf("a vector: %v", err)
		}
	}
}
