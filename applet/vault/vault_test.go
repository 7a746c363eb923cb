package vault

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

var errorsAs = errors.As

func TestRegisterLoginRelease(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("alice")
	key := register(t, c, "correct horse", 5)

	s, attempt, err := c.Login(context.Background(), []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.BackupKey, key) {
		t.Fatal("released key differs from the registered one")
	}
	if attempt.Kind != protocol.ReceiptAttempt || attempt.TriesLeft != 4 || attempt.FailedSinceSuccess != 0 {
		t.Fatalf("attempt receipt %+v", attempt)
	}
	if s.Released.TriesLeft != 5 || s.Released.FailedSinceSuccess != 0 || s.Released.StoreSequence < attempt.StoreSequence ||
		s.Released.AttemptsTotal != 1 || s.Released.SuccessesTotal != 0 {
		t.Fatalf("release receipt %+v after attempt at %d", s.Released, attempt.StoreSequence)
	}
	// KE3 changed nothing durable: the login is not a success until the
	// client confirms it with its first session command.
	if r := h.committedRecord("alice"); r.counter() != 1 || r.Successes != 0 {
		t.Fatalf("record %+v after KE3, before the confirmation", r)
	}
	again, _, err := s.Release(context.Background())
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("second release: %v", err)
	}
	if r := h.committedRecord("alice"); r.counter() != 0 || r.Successes != 1 {
		t.Fatalf("record %+v after a confirmed login", r)
	}
}

func TestWrongPasswordsAreCountedAndReported(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("bob")
	key := register(t, c, "right", 4)
	for i := uint(1); i <= 3; i++ {
		_, attempt, err := c.Login(context.Background(), []byte("wrong"))
		if !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if attempt.TriesLeft != 4-i || attempt.FailedSinceSuccess != i-1 {
			t.Fatalf("attempt %d receipt %+v", i, attempt)
		}
		// The count is durable before the reply: it is in the committed
		// state, not just staged.
		if r := h.committedRecord("bob"); r.counter() != uint64(i) {
			t.Fatalf("attempt %d: committed counter %d", i, r.counter())
		}
	}
	s := mustLogin(t, c, "right", key)
	if s.Released.FailedSinceSuccess != 3 {
		t.Fatalf("release says %d failures since the last success, want 3", s.Released.FailedSinceSuccess)
	}
	mustConfirm(t, s, key)
	if r := h.committedRecord("bob"); r.counter() != 0 {
		t.Fatalf("counter %d after success", r.counter())
	}
}

func TestLockoutAfterLimitErasesTheRecord(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("carol")
	register(t, c, "right", 3)
	for i := 0; i < 3; i++ {
		if _, _, err := c.Login(context.Background(), []byte("wrong")); !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatal(err)
		}
	}
	r := h.committedRecord("carol")
	if r.State != stateLocked || len(r.OPRFKey)+len(r.OPAQUE)+len(r.WrappedKey) != 0 {
		t.Fatalf("after the limit the committed record is %+v, want a tombstone", r)
	}
	if _, shreds := h.store.Stats(); shreds == 0 {
		t.Fatal("the lockout commit did not ask the store to shred old copies")
	}
	_, attempt, err := c.Login(context.Background(), []byte("right"))
	if !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatalf("right password on a locked record: %v", err)
	}
	if attempt.Kind != protocol.ReceiptLocked || attempt.TriesLeft != 0 {
		t.Fatalf("locked receipt %+v", attempt)
	}
	if r := h.committedRecord("carol"); r.counter() != 3 {
		t.Fatalf("a locked record's counter moved to %d", r.counter())
	}
}

func TestFinalAttemptWithTheRightPasswordRestoresTheRecord(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("dave")
	key := register(t, c, "right", 3)
	for i := 0; i < 2; i++ {
		c.Login(context.Background(), []byte("wrong"))
	}
	s := mustLogin(t, c, "right", key)
	if s.Released.FailedSinceSuccess != 2 || s.Released.TriesLeft != 3 {
		t.Fatalf("release receipt %+v", s.Released)
	}
	// Revived with one try left: until the client confirms, the login
	// that proved the password is not a success.
	r := h.committedRecord("dave")
	if r.State != stateLive || r.counter() != 2 || len(r.WrappedKey) == 0 {
		t.Fatalf("record after a final-attempt success: %+v", r)
	}
	mustConfirm(t, s, key)
	if r := h.committedRecord("dave"); r.counter() != 0 || r.Successes != 1 {
		t.Fatalf("record after the confirmation: %+v", r)
	}
	mustLogin(t, c, "right", key)
}

func TestFinalAttemptSecretsDoNotSurviveAReboot(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("erin")
	register(t, c, "right", 2)
	c.Login(context.Background(), []byte("wrong"))

	// KE1 of the final attempt, then the power goes before KE3.
	ke1Req, _ := loginStartRequest(t, "erin")
	var start protocol.LoginStartReply
	if err := protocol.Decode(h.v.handle(context.Background(), ke1Req), protocol.TypeLoginStart, &start); err != nil {
		t.Fatal(err)
	}
	h.boot()
	fin, _ := protocol.Encode(protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: make([]byte, protocol.KE3Size)})
	err := protocol.Decode(h.v.handle(context.Background(), fin), protocol.TypeLoginFinish, &protocol.SealedReply{})
	wantCode(t, err, protocol.CodeUnknownHandle)
	if _, attempt, err := c.Login(context.Background(), []byte("right")); !errors.Is(err, testclient.ErrWrongPassword) || attempt.Kind != protocol.ReceiptLocked {
		t.Fatalf("after a reboot mid final attempt: %v %+v", err, attempt)
	}
}

func TestFinalAttemptSecretsAreForgottenOnExpiry(t *testing.T) {
	h := newHarness(t, Options{LoginTTL: time.Second})
	c := h.client("fay")
	register(t, c, "right", 1)
	req, _ := loginStartRequest(t, "fay")
	var start protocol.LoginStartReply
	if err := protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeLoginStart, &start); err != nil {
		t.Fatal(err)
	}
	if h.v.logins.len() != 1 {
		t.Fatal("no pending login")
	}
	h.clock.Advance(2 * time.Second)
	h.v.Expire()
	if h.v.logins.len() != 0 {
		t.Fatal("an expired login is still held")
	}
	if _, attempt, _ := c.Login(context.Background(), []byte("right")); attempt.Kind != protocol.ReceiptLocked {
		t.Fatalf("after expiry of the final attempt: %+v", attempt)
	}
	h.v.Expire()
	if n := len(h.v.finals.until); n != 0 {
		t.Fatalf("%d final logins still remembered after they expired", n)
	}
}

// loginStartRequest builds a KE1 for a password nobody registered.
func loginStartRequest(t testing.TB, user string) ([]byte, []byte) {
	t.Helper()
	ke1 := validKE1(t)
	b, err := protocol.Encode(protocol.TypeLoginStart, &protocol.LoginStart{UserID: []byte(user), KE1: ke1})
	if err != nil {
		t.Fatal(err)
	}
	return b, ke1
}
