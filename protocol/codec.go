package protocol

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// ErrMalformed is wrapped by every decoding error: the bytes are not a
// well-formed message of the expected type.
var ErrMalformed = errors.New("protocol: malformed message")

// MaxMessageSize bounds a message. It equals the frame payload limit so that
// every message fits one frame.
const MaxMessageSize = MaxPayload

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   8,
		MaxArrayElements:  64,
		MaxMapPairs:       32,
		IntDec:            cbor.IntDecConvertNone,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Message is implemented by every message of this package (and only by
// them): validate checks what CBOR cannot, chiefly the exact length of
// fixed-size byte strings and the presence of required fields.
type Message interface {
	validate() error
}

// Marshal encodes m in core deterministic CBOR after checking it is valid,
// so that a vault never emits a message its peer would reject.
func Marshal(m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding: %w", err)
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), MaxMessageSize)
	}
	return b, nil
}

// Unmarshal decodes b into m strictly and validates it. b must be in core
// deterministic encoding (checkCanonical). Every failure wraps ErrMalformed.
func Unmarshal(b []byte, m Message) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), MaxMessageSize)
	}
	if err := checkCanonical(b); err != nil {
		return err
	}
	if err := decMode.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := m.validate(); err != nil {
		return err
	}
	return checkOneEncoding(b, m)
}

// checkOneEncoding refuses b unless it is exactly how m encodes. Canonical
// CBOR alone leaves a message two encodings where Go's zero value stands
// for "absent": an optional field present but empty or zero ({1: 1, 5: 0}
// decodes as the release {1: 1}), or a required field left out (a status
// without pending_logins, an identity without insecure, read as false). A
// message has one encoding (SPEC.md, "Conventions"), so that a signature or
// hash over its bytes is over the message.
func checkOneEncoding(b []byte, m Message) error {
	again, err := encMode.Marshal(m)
	same := err == nil && bytes.Equal(again, b)
	clear(again) // it may be a sealed message's plaintext
	if !same {
		return fmt.Errorf("%w: a field is missing, or present with an empty or zero value where it must be absent", ErrMalformed)
	}
	return nil
}

// checkCanonical refuses b unless it is the core deterministic encoding
// (RFC 8949 §4.2.1) of a data item made only of what messages use. The
// decoder alone accepts integers and lengths in longer forms than needed,
// map keys in any order, and simple values, null or undefined where
// integers or absent fields are meant, so that one message would have many
// encodings, and a signature or hash over one of them would not be over
// "the" message. b is decoded as a generic data item under the same limits
// as messages, checked for kinds no message holds, encoded again
// deterministically, and must come out byte for byte the same.
func checkCanonical(b []byte) error {
	var item any
	if err := decMode.Unmarshal(b, &item); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := plainItem(item); err != nil {
		return err
	}
	again, err := encMode.Marshal(item)
	if err != nil || !bytes.Equal(again, b) {
		return fmt.Errorf("%w: not in core deterministic encoding (RFC 8949 section 4.2.1)", ErrMalformed)
	}
	return nil
}

// plainItem refuses the kinds of data item no message holds: floats, null,
// undefined and other simple values than false and true, integers beyond
// 64 bits.
func plainItem(v any) error {
	switch v := v.(type) {
	case uint64, int64, []byte, cbor.ByteString, string, bool: // ByteString: a byte string map key
		return nil
	case []any:
		for _, e := range v {
			if err := plainItem(e); err != nil {
				return err
			}
		}
		return nil
	case map[any]any:
		for k, e := range v {
			if err := plainItem(k); err != nil {
				return err
			}
			if err := plainItem(e); err != nil {
				return err
			}
		}
		return nil
	case nil:
		return fmt.Errorf("%w: null or undefined", ErrMalformed)
	}
	return fmt.Errorf("%w: a data item of a kind no message holds (%T)", ErrMalformed, v)
}

// checkLen reports a byte string whose length is not exactly n.
func checkLen(field string, b []byte, n int) error {
	if len(b) != n {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, field, len(b), n)
	}
	return nil
}

// checkRange reports a byte string whose length is outside [min, max].
func checkRange(field string, b []byte, min, max int) error {
	if len(b) < min || len(b) > max {
		return fmt.Errorf("%w: %s is %d bytes, want %d to %d", ErrMalformed, field, len(b), min, max)
	}
	return nil
}

// marshalPaddedTo encodes m, whose padding field is *pad, with as many zero
// bytes of padding as make it exactly size bytes. Every padded structure
// needs between 24 and 255 bytes of padding (its size is chosen so), so the
// padding's own CBOR header is always two bytes: one more than the empty
// string's.
func marshalPaddedTo(what string, size int, m Message, pad *[]byte) ([]byte, error) {
	*pad = []byte{}
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	if n := size - len(b) - 1; n >= 24 && n <= 255 {
		*pad = make([]byte, n)
		if b, err = Marshal(m); err != nil {
			return nil, err
		}
	}
	if len(b) != size {
		return nil, fmt.Errorf("protocol: %s of %d bytes does not pad to %d", what, len(b), size)
	}
	return b, nil
}
