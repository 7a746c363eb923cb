package vault

import (
	"context"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// holdingClient relays to the vault, except that it keeps the first
// register-finish it sees and answers the client with a transport error, as
// an operator holding a registration back would.
func holdingClient(h *harness, user string) (*testclient.Client, func() ([]byte, bool)) {
	var held []byte
	c := &testclient.Client{Identity: h.v.Identity(), UserID: []byte(user),
		RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) {
			var env protocol.Envelope
			if held == nil && protocol.Unmarshal(req, &env) == nil && env.Type == protocol.TypeRegisterFinish {
				held = req
				return nil, errors.New("connection reset (the operator kept the request)")
			}
			return h.v.handle(ctx, req), nil
		}}
	return c, func() ([]byte, bool) { return held, held != nil }
}

// The held-back registration: the operator keeps a RegisterFinish, lets the
// user's retry register, burns that record to its tombstone, then delivers
// the kept finish, which used to replace the tombstone with a live record of
// the same password (and, for a client retrying with the same key, the same
// key): limit more guesses per kept finish.
func TestAHeldBackRegistrationCannotReviveABurnedRecord(t *testing.T) {
	const limit = 3
	h := newHarness(t, Options{})
	ctx := context.Background()
	key := newBackupKey(t)
	c, held := holdingClient(h, "rita")
	if _, err := c.Register(ctx, []byte("right"), key, limit); err == nil {
		t.Fatal("the held registration reported success")
	}
	if _, err := c.Register(ctx, []byte("right"), key, limit); err != nil {
		t.Fatalf("the retried registration: %v", err)
	}
	guesses := operatorGuesses(t, h, "rita", limit)
	finish, ok := held()
	if !ok {
		t.Fatal("nothing was held")
	}
	var reply protocol.SealedReply
	if err := protocol.Decode(h.v.handle(ctx, finish), protocol.TypeRegisterFinish, &reply); err == nil {
		t.Error("a registration held back while the record was registered and burned was accepted")
	}
	guesses += operatorGuesses(t, h, "rita", 2*limit)
	if guesses > limit {
		t.Fatalf("the operator had %d guesses evaluated on records of one password, limit %d", guesses, limit)
	}
	if n := len(h.v.watches.m); n != 0 {
		t.Fatalf("%d users still watched after every registration ended", n)
	}
}

// The same with a delete in between: the record is gone again when the
// kept finish arrives, as it was when that registration started.
func TestAHeldBackRegistrationCannotReturnAfterADelete(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := context.Background()
	key := newBackupKey(t)
	c, held := holdingClient(h, "sam")
	c.Register(ctx, []byte("right"), key, 3)
	if _, err := c.Register(ctx, []byte("right"), key, 3); err != nil {
		t.Fatal(err)
	}
	s := mustLogin(t, h.client("sam"), "right", key)
	if _, err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	finish, _ := held()
	if err := protocol.Decode(h.v.handle(ctx, finish), protocol.TypeRegisterFinish, &protocol.SealedReply{}); err == nil {
		t.Fatal("a registration held back across a delete brought the deleted key back")
	}
	if _, ok := h.store.Committed(userKey([]byte("sam"))); ok {
		t.Fatal("the deleted user has a record again")
	}
}
