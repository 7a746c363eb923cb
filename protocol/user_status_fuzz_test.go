package protocol

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
)

// FuzzUserStatus feeds arbitrary bytes to what a client does with a
// user-status reply: decode the envelope, verify the signature against the
// vault's key and the request, and decode the body. Whatever gets through
// is a body of exactly UserStatusBodySize bytes, echoes the request, holds
// tries_left = limit − min(counter, limit), and pads back to the same
// bytes. The seeds are the vectors' user-status cases, as envelopes and as
// bare bodies, and a reply signed with the fuzz key.
func FuzzUserStatus(f *testing.F) {
	seed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	req := &UserStatusRequest{UserID: []byte("alice"), Nonce: bytes.Repeat([]byte{0xA0}, StatusNonceSize)}
	good, err := SignUserStatus(seed, &UserStatus{Version: Version, UserID: req.UserID, Nonce: req.Nonce,
		Generation: 1 << 63, Limit: 10, TriesLeft: 9, FailedSinceSuccess: 1, StoreSequence: 42, AttemptsTotal: 12, SuccessesTotal: 3})
	if err != nil {
		f.Fatal(err)
	}
	env, err := Encode(TypeUserStatus, &good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add(good.Body)
	for _, c := range vectorfile.Load(f, vectorDir) {
		if strings.Contains(c.Path, "user-status") {
			f.Add(c.Data)
		}
	}
	pub := seed.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		var body UserStatus
		if err := Unmarshal(b, &body); err == nil {
			if len(b) == UserStatusBodySize {
				again, err := body.marshalPadded()
				if err != nil || !bytes.Equal(again, b) {
					t.Fatalf("a %d-byte user status does not pad back to itself: %v", len(b), err)
				}
			}
			checkUserStatusInvariants(t, &body)
		}
		var reply UserStatusReply
		err := Decode(b, TypeUserStatus, &reply)
		if err != nil {
			var pe *Error
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) && !errors.As(err, &pe) {
				t.Fatalf("decode failed with an unexpected error: %v", err)
			}
			return
		}
		st, err := reply.Verify(pub, req)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) &&
				!errors.Is(err, ErrReplayedStatus) && !errors.Is(err, ErrOtherUser) {
				t.Fatalf("verify failed with an unexpected error: %v", err)
			}
			return
		}
		if len(reply.Body) != UserStatusBodySize || !bytes.Equal(st.Nonce, req.Nonce) || !bytes.Equal(st.UserID, req.UserID) {
			t.Fatalf("verified a user status that does not answer the request: %+v", st)
		}
		checkUserStatusInvariants(t, st)
	})
}

func checkUserStatusInvariants(t *testing.T, s *UserStatus) {
	t.Helper()
	if s.TriesLeft > s.Limit || s.TriesLeft != s.Limit-min(s.FailedSinceSuccess, s.Limit) ||
		(s.RevivableMillis != 0 && s.TriesLeft != 0) || s.Limit < MinLimit || s.Limit > MaxLimitCeiling {
		t.Fatalf("decoded an inconsistent user status: %+v", s)
	}
}
