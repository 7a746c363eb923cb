package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
)

// contextUserStatus is what a user status is signed under: no receipt,
// status or identity signature verifies as one, nor one as them.
const contextUserStatus = "coffer/v1 user status\x00"

// UserStatusBodySize is the length of every encoded UserStatus, padded as
// receipts are, so that the reply's size says nothing about the record
// behind it (a real one, a locked one, or none).
const UserStatusBodySize = 256

// UserStatusRequest asks the vault for one user's signed attempt count
// (SPEC.md, "User status"). It counts nothing. UserID travels in clear,
// for routing: cofferd refuses one that is not the account's, as it does
// for a login start. Nonce is fresh and random for each request; the vault
// signs it back.
type UserStatusRequest struct {
	UserID []byte `cbor:"1,keyasint"`
	Nonce  []byte `cbor:"2,keyasint"`
}

func (m *UserStatusRequest) validate() error {
	return firstErr(checkUserID(m.UserID), checkLen("status nonce", m.Nonce, StatusNonceSize))
}

// NewUserStatusRequest returns a user-status request for userID with a
// fresh random nonce; pass the same request to UserStatusReply.Verify.
func NewUserStatusRequest(userID []byte) *UserStatusRequest {
	n := make([]byte, StatusNonceSize)
	rand.Read(n) // never fails (crypto/rand)
	return &UserStatusRequest{UserID: bytes.Clone(userID), Nonce: n}
}

// UserStatusReply is an encoded UserStatus and the vault's Ed25519
// signature over it, by the signing key of its identity bundle.
type UserStatusReply struct {
	Body      []byte `cbor:"1,keyasint"`
	Signature []byte `cbor:"2,keyasint"`
}

func (m *UserStatusReply) validate() error {
	return firstErr(checkLen("user status", m.Body, UserStatusBodySize), checkLen("signature", m.Signature, SignatureSize))
}

// UserStatus is what the vault attests about one user's record at the
// moment it answered: the counter and totals its receipts carry, without
// counting anything. For a user without a record it is shaped like a real
// one (SPEC.md says which values it takes), so that its size and fields
// do not tell the two apart.
type UserStatus struct {
	Version    uint   `cbor:"1,keyasint"`
	UserID     []byte `cbor:"2,keyasint"`
	Nonce      []byte `cbor:"3,keyasint"` // the request's, echoed
	Generation uint64 `cbor:"4,keyasint"`
	Limit      uint   `cbor:"5,keyasint"`
	TriesLeft  uint   `cbor:"6,keyasint"`
	// FailedSinceSuccess counts the attempts counted against the user
	// since the last confirmed success: the record's counter, attempts −
	// watermark (a status has no attempt of its own to leave out).
	FailedSinceSuccess uint   `cbor:"7,keyasint"`
	StoreSequence      uint64 `cbor:"8,keyasint"`
	AttemptsTotal      Total  `cbor:"9,keyasint"`
	SuccessesTotal     Total  `cbor:"10,keyasint"`
	// RevivableMillis, for a locked record, is how long its final login
	// may still bring it back; 0 otherwise.
	RevivableMillis Total  `cbor:"11,keyasint"`
	Padding         []byte `cbor:"15,keyasint"`
}

func (s *UserStatus) validate() error {
	if s.Version != Version {
		return fmt.Errorf("%w: user status version %d", ErrMalformed, s.Version)
	}
	if s.TriesLeft > s.Limit {
		return fmt.Errorf("%w: user status has %d tries left of %d", ErrMalformed, s.TriesLeft, s.Limit)
	}
	if s.TriesLeft != s.Limit-min(s.FailedSinceSuccess, s.Limit) {
		return fmt.Errorf("%w: user status has %d tries left of %d with a counter of %d", ErrMalformed, s.TriesLeft, s.Limit, s.FailedSinceSuccess)
	}
	if s.RevivableMillis != 0 && s.TriesLeft != 0 {
		return fmt.Errorf("%w: only a locked record can be revivable", ErrMalformed)
	}
	for _, p := range s.Padding {
		if p != 0 {
			return fmt.Errorf("%w: user status padding is not zero", ErrMalformed)
		}
	}
	return firstErr(checkUserID(s.UserID), checkLen("status nonce", s.Nonce, StatusNonceSize), checkLimit(s.Limit))
}

// marshalPadded encodes s with as much zero padding as makes the body
// exactly UserStatusBodySize bytes (between 24 and 255 bytes of it, so its
// header is always two bytes).
func (s *UserStatus) marshalPadded() ([]byte, error) {
	p := *s
	return marshalPaddedTo("user status", UserStatusBodySize, &p, &p.Padding)
}

// SignUserStatus encodes, pads and signs s.
func SignUserStatus(key ed25519.PrivateKey, s *UserStatus) (UserStatusReply, error) {
	body, err := s.marshalPadded()
	if err != nil {
		return UserStatusReply{}, err
	}
	return UserStatusReply{Body: body, Signature: ed25519.Sign(key, withContext(contextUserStatus, body))}, nil
}

// ErrOtherUser is returned for a correctly signed user status about
// another user than the one asked about.
var ErrOtherUser = errors.New("protocol: the user status is about another user")

// Verify checks a user status against the vault's signing key, decodes it,
// and checks that it answers req: its nonce (else ErrReplayedStatus) and
// its user (else ErrOtherUser).
func (m *UserStatusReply) Verify(vaultKey ed25519.PublicKey, req *UserStatusRequest) (*UserStatus, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	if len(vaultKey) != ed25519.PublicKeySize || !ed25519.Verify(vaultKey, withContext(contextUserStatus, m.Body), m.Signature) {
		return nil, fmt.Errorf("%w: user status", ErrBadSignature)
	}
	var s UserStatus
	if err := Unmarshal(m.Body, &s); err != nil {
		return nil, err
	}
	if len(req.Nonce) != StatusNonceSize || !bytes.Equal(s.Nonce, req.Nonce) {
		return nil, ErrReplayedStatus
	}
	if !bytes.Equal(s.UserID, req.UserID) {
		return nil, ErrOtherUser
	}
	return &s, nil
}
