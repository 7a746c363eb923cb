package opaque

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers match them with errors.Is; the wrapped text adds
// only public facts (which field, which length), never secret values.
var (
	// ErrMalformed: a message or record has the wrong length or a field
	// that can never be valid.
	ErrMalformed = errors.New("opaque: malformed input")
	// ErrInvalidElement: an encoded group element is not canonical, not on
	// the group, or is the identity element.
	ErrInvalidElement = errors.New("opaque: invalid group element")
	// ErrInvalidScalar: a key is not a canonical non-zero scalar.
	ErrInvalidScalar = errors.New("opaque: invalid scalar")
	// ErrInvalidArgument: a caller-supplied parameter (seed, identifier,
	// identity, context, randomness source) is unusable.
	ErrInvalidArgument = errors.New("opaque: invalid argument")
	// ErrAuthentication: a MAC did not verify. The client reports the same
	// error whether its envelope or the server's MAC failed, so that its
	// behaviour reveals nothing more than "login failed".
	ErrAuthentication = errors.New("opaque: authentication failed")
	// ErrStateUsed: Finish was already called on this state (or it was
	// discarded); a KE3 can be checked only once.
	ErrStateUsed = errors.New("opaque: state already used")
	// ErrRandom: the randomness source failed.
	ErrRandom = errors.New("opaque: randomness source failed")
)

// malformed wraps ErrMalformed with the name of the input and the lengths,
// which are public.
func malformed(what string, got, want int) error {
	return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, what, got, want)
}

// invalidElement wraps ErrInvalidElement with the name of the field.
func invalidElement(what string) error {
	return fmt.Errorf("%w: %s", ErrInvalidElement, what)
}
