package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

// Every user status signs to a body of exactly UserStatusBodySize bytes,
// from the smallest record to the largest, so that the reply's length says
// nothing about the record behind it.
func TestUserStatusIsOneSize(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	nonce := bytes.Repeat([]byte{1}, StatusNonceSize)
	for _, s := range []*UserStatus{
		{UserID: []byte{1}, Limit: 1, TriesLeft: 1},
		{UserID: []byte{1}, Generation: 1 << 63, Limit: 10, TriesLeft: 9, FailedSinceSuccess: 1},
		{UserID: bytes.Repeat([]byte{2}, MaxUserIDSize), Generation: ^uint64(0), Limit: MaxLimitCeiling,
			FailedSinceSuccess: ^uint(0), StoreSequence: ^uint64(0), AttemptsTotal: ^Total(0), SuccessesTotal: ^Total(0),
			RevivableMillis: ^Total(0)},
	} {
		s.Version, s.Nonce = Version, nonce
		r, err := SignUserStatus(key, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Body) != UserStatusBodySize {
			t.Errorf("%+v: body of %d bytes", s, len(r.Body))
		}
		got, err := r.Verify(key.Public().(ed25519.PublicKey), &UserStatusRequest{UserID: s.UserID, Nonce: nonce})
		if err != nil || got.TriesLeft != s.TriesLeft || got.AttemptsTotal != s.AttemptsTotal {
			t.Errorf("%+v: verified as %+v, %v", s, got, err)
		}
	}
}

// A status is bound to its request: another nonce is a replay, another user
// id another account's status, another key not the vault's.
func TestUserStatusAnswersOneRequest(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	req := NewUserStatusRequest([]byte("alice"))
	r, err := SignUserStatus(key, &UserStatus{Version: Version, UserID: req.UserID, Nonce: req.Nonce, Limit: 3, TriesLeft: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(pub, NewUserStatusRequest([]byte("alice"))); !errors.Is(err, ErrReplayedStatus) {
		t.Errorf("another nonce: %v", err)
	}
	if _, err := r.Verify(pub, &UserStatusRequest{UserID: []byte("bob"), Nonce: req.Nonce}); !errors.Is(err, ErrOtherUser) {
		t.Errorf("another user: %v", err)
	}
	if _, err := r.Verify(other, req); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another key: %v", err)
	}
	if _, err := r.Verify(pub, req); err != nil {
		t.Errorf("its own request: %v", err)
	}
}
