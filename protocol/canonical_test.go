package protocol

import (
	"bytes"
	"errors"
	"testing"
)

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

// The independent check agrees with the vectors: it accepts every message
// that must decode, and refuses every one that breaks the encoding rules.
func TestWalkCanonicalAgreesWithTheVectors(t *testing.T) {
	ok, broken, rules := messageVectors(t)
	for _, b := range ok {
		if err := walkCanonical(b); err != nil {
			t.Errorf("a message that must decode: %v", err)
		}
	}
	n := 0
	for path, b := range broken {
		if rules[path] != "encoding" {
			continue
		}
		n++
		if err := walkCanonical(b); err == nil {
			t.Errorf("%s: the independent check accepts it", path)
		}
	}
	if n == 0 || len(ok) == 0 {
		t.Fatal("no vectors to agree on")
	}
}
