package protocol

import "fmt"

// Encode wraps body in an envelope of type t: a request, or the reply to a
// request of type t.
func Encode(t Type, body Message) ([]byte, error) {
	b, err := Marshal(body)
	if err != nil {
		return nil, err
	}
	return Marshal(&Envelope{Version: Version, Type: t, Body: b})
}

// EncodeError builds the error reply to a request of type t (TypeError when
// the request's type is unknown). Errors that are not an *Error are reduced
// to their code, so that no internal detail leaks into a reply.
func EncodeError(err error) []byte {
	pe, ok := err.(*Error)
	if !ok {
		code := CodeOf(err)
		msg := ""
		if code == CodeMalformed || code == CodeUnsupportedVersion {
			// Decoding errors describe the request, not the vault: useful
			// to the sender and safe to return.
			msg = err.Error()
		}
		pe = Errorf(code, "%s", msg)
	}
	b, merr := Encode(TypeError, pe)
	if merr != nil {
		// Only a bug gets here; the fixed reply below always encodes.
		b, _ = Encode(TypeError, &Error{Code: CodeInternal})
	}
	return b
}

// Decode reads an envelope of the expected type into body. An error reply
// is returned as an *Error.
func Decode(b []byte, want Type, body Message) error {
	var env Envelope
	if err := Unmarshal(b, &env); err != nil {
		return err
	}
	if env.Type == TypeError {
		var pe Error
		if err := Unmarshal(env.Body, &pe); err != nil {
			return err
		}
		return &pe
	}
	if env.Type != want {
		return fmt.Errorf("%w: got a %s message, want %s", ErrMalformed, env.Type, want)
	}
	return Unmarshal(env.Body, body)
}

// PeekType returns the type of an encoded envelope.
func PeekType(b []byte) (Type, error) {
	var env Envelope
	if err := Unmarshal(b, &env); err != nil {
		return TypeError, err
	}
	return env.Type, nil
}
