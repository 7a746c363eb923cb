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

func decodeSession(t testing.TB, v *Vault, req []byte) error {
	t.Helper()
	return protocol.Decode(v.handle(context.Background(), req), protocol.TypeSession, &protocol.SessionReply{})
}

func TestKE3IsSingleUseAndExpires(t *testing.T) {
	h := newHarness(t, Options{LoginTTL: 5 * time.Second})
	register(t, h.client("leo"), "right", 5)

	start, err := loginStart(t, h.v, "leo")
	if err != nil {
		t.Fatal(err)
	}
	fin, _ := protocol.Encode(protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: make([]byte, protocol.KE3Size)})
	wantCode(t, protocol.Decode(h.v.handle(context.Background(), fin), protocol.TypeLoginFinish, &protocol.SealedReply{}), protocol.CodeAuthentication)
	// Replayed KE3: the state is gone after the first try.
	wantCode(t, protocol.Decode(h.v.handle(context.Background(), fin), protocol.TypeLoginFinish, &protocol.SealedReply{}), protocol.CodeUnknownHandle)

	start, _ = loginStart(t, h.v, "leo")
	h.clock.Advance(6 * time.Second)
	fin, _ = protocol.Encode(protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: make([]byte, protocol.KE3Size)})
	wantCode(t, protocol.Decode(h.v.handle(context.Background(), fin), protocol.TypeLoginFinish, &protocol.SealedReply{}), protocol.CodeUnknownHandle)
}

func TestReplayedKE1IsCountedAgain(t *testing.T) {
	h := newHarness(t, Options{})
	register(t, h.client("mia"), "right", 5)
	req, _ := loginStartRequest(t, "mia")
	for i := 1; i <= 3; i++ {
		if typ, _ := protocol.PeekType(h.v.handle(context.Background(), req)); typ != protocol.TypeLoginStart {
			t.Fatal("replayed KE1 refused")
		}
		if r := h.committedRecord("mia"); r.counter() != uint64(i) {
			t.Fatalf("replay %d: counter %d", i, r.counter())
		}
	}
}

func TestSessionRejectsUnsealedReplayedAndReorderedCommands(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("ned")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	release := &protocol.SessionCommand{Command: protocol.CommandRelease}

	// Unsealed: a command sealed under another key does not open.
	forged, _ := protocol.Encode(protocol.TypeSession, &protocol.Session{Handle: s.Handle(), Seq: 1, Sealed: bytes.Repeat([]byte{7}, 40)})
	wantCode(t, decodeSession(t, h.v, forged), protocol.CodeAuthentication)

	first, _ := s.SealedRequest(release, 1)
	if err := decodeSession(t, h.v, first); err != nil {
		t.Fatal(err)
	}
	wantCode(t, decodeSession(t, h.v, first), protocol.CodeSequence) // replay
	skipped, _ := s.SealedRequest(release, 5)
	wantCode(t, decodeSession(t, h.v, skipped), protocol.CodeSequence) // out of order
	// A bit flipped in a valid command.
	next, _ := s.SealedRequest(release, 2)
	var env protocol.Envelope
	protocol.Unmarshal(next, &env)
	var m protocol.Session
	protocol.Unmarshal(env.Body, &m)
	m.Sealed[3] ^= 1
	flipped, _ := protocol.Encode(protocol.TypeSession, &m)
	wantCode(t, decodeSession(t, h.v, flipped), protocol.CodeAuthentication)
	// None of that disturbed the session.
	next, _ = s.SealedRequest(release, 2)
	if err := decodeSession(t, h.v, next); err != nil {
		t.Fatalf("session after refused commands: %v", err)
	}
	// An unknown handle.
	other := append([]byte(nil), s.Handle()...)
	other[0] ^= 1
	m.Handle, m.Seq = other, 3
	unknown, _ := protocol.Encode(protocol.TypeSession, &m)
	wantCode(t, decodeSession(t, h.v, unknown), protocol.CodeUnknownHandle)
}

func TestChangePassword(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("olga")
	key := register(t, c, "old", 5)
	c.Login(context.Background(), []byte("typo"))
	s := mustLogin(t, c, "old", key)
	r, err := s.ChangePassword(context.Background(), []byte("new"), 7)
	if err != nil {
		t.Fatal(err)
	}
	if r.Limit != 7 || r.TriesLeft != 7 || r.Generation == s.Released.Generation {
		t.Fatalf("change receipt %+v", r)
	}
	if _, _, err := s.Release(context.Background()); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
		t.Fatalf("session still open after a password change: %v", err)
	}
	if _, _, err := c.Login(context.Background(), []byte("old")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatalf("old password after change: %v", err)
	}
	s = mustLogin(t, c, "new", key)
	if s.Released.FailedSinceSuccess != 1 {
		t.Fatalf("failed attempts since success %d, want 1 (the old password)", s.Released.FailedSinceSuccess)
	}
	if _, shreds := h.store.Stats(); shreds == 0 {
		t.Fatal("the change did not shred the old record")
	}
}

func TestChangeFinishNeedsChangeStartAndAllowedLimit(t *testing.T) {
	h := newHarness(t, Options{MaxLimit: 8})
	c := h.client("pia")
	key := register(t, c, "pw", 5)
	s := mustLogin(t, c, "pw", key)
	rec := bytes.Repeat([]byte{1}, protocol.RecordSize)
	_, err := s.Command(context.Background(), &protocol.SessionCommand{Command: protocol.CommandChangeFinish, Record: rec, WrappedKey: make([]byte, 72), Limit: 5})
	wantCode(t, err, protocol.CodeSequence)
	if _, err := s.ChangePassword(context.Background(), []byte("new"), 9); !errors.Is(err, &protocol.Error{Code: protocol.CodeLimit}) {
		t.Fatalf("limit above the vault's maximum: %v", err)
	}
}

func TestDeleteErasesAndAllowsANewRegistration(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("quin")
	key := register(t, c, "pw", 5)
	s := mustLogin(t, c, "pw", key)
	if _, err := s.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.store.Committed(userKey([]byte("quin"))); ok {
		t.Fatal("record still committed after delete")
	}
	if _, r, err := c.Login(context.Background(), []byte("pw")); !errors.Is(err, testclient.ErrWrongPassword) || r.Kind != protocol.ReceiptAttempt {
		t.Fatalf("login after delete: %v", err)
	}
	key2 := register(t, c, "pw2", 5)
	mustLogin(t, c, "pw2", key2)
}

func TestLoginOnAChangedRecordFails(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("rita")
	key := register(t, c, "pw", 5)
	pending, _, err := loginPending(t, h, "rita", "pw")
	if err != nil {
		t.Fatal(err)
	}
	s := mustLogin(t, c, "pw", key)
	if _, err := s.ChangePassword(context.Background(), []byte("pw2"), 5); err != nil {
		t.Fatal(err)
	}
	// The first login's KE3 is right for the old record, which is gone:
	// not an authentication failure (nothing was altered), a stale login.
	if _, err := pending(); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
		t.Fatalf("KE3 for a replaced record: %v", err)
	}
}
