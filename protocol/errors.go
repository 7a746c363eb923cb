package protocol

import (
	"errors"
	"fmt"
)

// Code is a stable error code carried in an error reply. Codes never change
// meaning within a protocol version; new ones may be added.
type Code uint

const (
	CodeMalformed          Code = 1  // the request did not decode or validate
	CodeUnsupportedVersion Code = 2  // the envelope's version is not spoken here
	CodeUnknownHandle      Code = 3  // no such registration, login or session: never issued, used, or expired
	CodeAuthentication     Code = 4  // KE3 or a sealed message failed to authenticate
	CodeSequence           Code = 5  // a session command out of order or replayed
	CodeExists             Code = 6  // a live record already exists for this user
	CodeLimit              Code = 7  // attempt limit above this vault's maximum
	CodeBusy               Code = 8  // too many operations in flight: retry later
	CodeUnavailable        Code = 9  // storage failed; the vault fails closed
	CodeTampered           Code = 10 // the store failed its integrity check: service refused
	CodeNotProvisioned     Code = 11 // no signed identity bundle is installed
	CodeBadFrame           Code = 12 // the frame was damaged (framing layer)
	CodeInternal           Code = 13 // a bug; nothing was changed
	// CodeLocked answers a KE3 that proved the password when, since its
	// KE1, other attempts locked the record: the key is not released.
	CodeLocked         Code = 14
	CodeOutcomeUnknown Code = 15 // the vault may have acted on the request; its reply was lost
	// CodeVersion: a realm does not hold the named version, or not in the
	// state the request needs; nothing was counted (REALMS.md, section 7).
	CodeVersion Code = 16
	// CodeCounterOverLimit: a realm commit would set a limit at or below
	// the counter already reached; nothing changed.
	CodeCounterOverLimit Code = 17
)

var codeNames = map[Code]string{
	CodeMalformed:          "malformed request",
	CodeUnsupportedVersion: "unsupported protocol version",
	CodeUnknownHandle:      "unknown, used or expired handle",
	CodeAuthentication:     "authentication failed",
	CodeSequence:           "session sequence out of order",
	CodeExists:             "record exists",
	CodeLimit:              "attempt limit not allowed",
	CodeBusy:               "vault busy",
	CodeUnavailable:        "storage unavailable",
	CodeTampered:           "store integrity check failed",
	CodeNotProvisioned:     "vault not provisioned",
	CodeBadFrame:           "bad frame",
	CodeInternal:           "internal error",
	CodeLocked:             "locked by other attempts during this login",
	CodeOutcomeUnknown:     "outcome unknown",
	CodeVersion:            "version not held",
	CodeCounterOverLimit:   "counter already over the new limit",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("error code %d", uint(c))
}

// Error is the body of an error reply, and the Go error a peer returns for
// one. Message is for people and never carries secrets; programs use Code.
type Error struct {
	Code    Code   `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint"`
}

// MaxErrorMessage bounds an error's text.
const MaxErrorMessage = 256

func (e *Error) validate() error {
	if e.Code == 0 {
		return fmt.Errorf("%w: error code 0", ErrMalformed)
	}
	if len(e.Message) > MaxErrorMessage {
		return fmt.Errorf("%w: error message of %d bytes", ErrMalformed, len(e.Message))
	}
	return nil
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "vault: " + e.Code.String()
	}
	return "vault: " + e.Code.String() + ": " + e.Message
}

// Is makes errors.Is(err, &Error{Code: c}) match on the code alone.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Errorf builds an *Error. The message must not contain secrets.
func Errorf(code Code, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	return &Error{Code: code, Message: msg}
}

// ErrUnsupportedVersion is wrapped when an envelope names another version.
var ErrUnsupportedVersion = errors.New("protocol: unsupported version")

// CodeOf maps a decoding error to the code a reply should carry.
func CodeOf(err error) Code {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return pe.Code
	case errors.Is(err, ErrUnsupportedVersion):
		return CodeUnsupportedVersion
	case errors.Is(err, ErrMalformed):
		return CodeMalformed
	}
	return CodeInternal
}
