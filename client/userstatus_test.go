package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

func mustUserStatus(t *testing.T, c *Client) *UserStatus {
	t.Helper()
	st, err := c.UserStatus(context.Background())
	if err != nil {
		t.Fatalf("user status: %v", err)
	}
	return st
}

// The user status follows the receipts of a restore: after a wrong
// password it shows that receipt's tries left; after the login that
// confirmed (Close), the release receipt's, with one more success and no
// failure. Asking spends nothing.
func TestUserStatusFollowsTheReceipts(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("right", 4)
	c := f.connect()
	if st := mustUserStatus(t, c); st.TriesLeft != 4 || st.FailedSinceSuccess != 0 || st.OtherRegistration || !st.NotFromThisKnown {
		t.Fatalf("after registering: %+v", st)
	}
	if _, err := f.login("wrong"); err == nil {
		t.Fatal("a wrong password opened")
	}
	attempt := *f.cfg.LastReceipt
	for range 3 {
		st := mustUserStatus(t, f.connect())
		if st.TriesLeft != attempt.TriesLeft || st.TriesLeft != 3 || st.FailedSinceSuccess != attempt.FailedSinceSuccess+1 ||
			uint64(st.AttemptsTotal) != attempt.AttemptsTotal || st.NotFromThisDevice != 0 {
			t.Fatalf("after the attempt receipt %+v: %+v", attempt, st)
		}
	}
	s := f.mustLogin("right", k)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := *f.cfg.LastReceipt
	st := mustUserStatus(t, f.connect())
	if released.Kind != "released" || st.TriesLeft != released.TriesLeft || st.TriesLeft != 4 || st.FailedSinceSuccess != 0 ||
		uint64(st.SuccessesTotal) != released.SuccessesTotal+1 || uint64(st.AttemptsTotal) != released.AttemptsTotal {
		t.Fatalf("after the restore's release %+v: %+v", released, st)
	}
}

// What the host may do to a user status, and what the client makes of it:
// a reply signed by another key, a genuine one replayed, one about another
// user, and a store rolled back. None is taken for the vault's count.
func TestUserStatusRefusesWhatTheVaultDidNotSay(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	f.register("right", 5)
	_, forger, _ := ed25519.GenerateKey(rand.Reader)

	// A status signed by another key, claiming one try left.
	f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeUserStatus {
			return false
		}
		var req protocol.UserStatusRequest
		protocol.Decode(body, typ, &req)
		fake, _ := protocol.SignUserStatus(forger, &protocol.UserStatus{Version: 1, UserID: req.UserID, Nonce: req.Nonce,
			Generation: f.cfg.Generation, Limit: 5, TriesLeft: 1, FailedSinceSuccess: 4})
		b, _ := protocol.Encode(typ, &fake)
		w.Write(b)
		return true
	})
	if st, err := f.connect().UserStatus(context.Background()); !errors.Is(err, ErrBadUserStatus) {
		t.Fatalf("a status signed by another key: %+v, %v", st, err)
	}

	// A genuine status, replayed to a later request.
	var kept []byte
	f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeUserStatus {
			return false
		}
		if kept == nil {
			kept = f.host.Vault(r.Context(), body)
		}
		w.Write(kept)
		return true
	})
	mustUserStatus(t, f.connect())
	if _, err := f.connect().UserStatus(context.Background()); !errors.Is(err, ErrBadUserStatus) || !errors.Is(err, protocol.ErrReplayedStatus) {
		t.Fatalf("a replayed status: %v", err)
	}

	// The request sent on under another account's user id: the vault's
	// genuine answer about that user.
	_, otherID := f.host.AddAccount()
	f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeUserStatus {
			return false
		}
		var req protocol.UserStatusRequest
		protocol.Decode(body, typ, &req)
		req.UserID = otherID
		b, _ := protocol.Encode(typ, &req)
		w.Write(f.host.Vault(r.Context(), b))
		return true
	})
	if _, err := f.connect().UserStatus(context.Background()); !errors.Is(err, protocol.ErrOtherUser) {
		t.Fatalf("a status about another user: %v", err)
	}
	f.host.Intercept(nil)

	// The store rolled back behind the wrong passwords this device saw.
	rollback := f.host.Snapshot()
	f.login("wrong")
	f.login("wrong")
	rollback()
	var rb *RollbackError
	// The contact's own signed status stops it first...
	if _, err := Connect(context.Background(), f.cfg, f.opts); !errors.As(err, &rb) {
		t.Fatalf("a contact with a rolled-back store: %v", err)
	}
	// ...and the user status refuses it on its own too (a client past the
	// contact's tripwire, as the rollback recovery is).
	if _, err := f.connectForRecovery().UserStatus(context.Background()); !errors.As(err, &rb) {
		t.Fatalf("a rolled-back store: %v", err)
	}
}

// The check against the last receipt, case by case (protocol/SPEC.md,
// "User status"): nothing counted since, so the status must show what the
// receipt implies; with attempts or another device's confirmation since,
// it may show anything.
func TestStatusFollowsItsReceipt(t *testing.T) {
	status := func(tries, limit uint, attempts, successes uint64) *protocol.UserStatus {
		return &protocol.UserStatus{Limit: limit, TriesLeft: tries, FailedSinceSuccess: limit - tries,
			AttemptsTotal: protocol.Total(attempts), SuccessesTotal: protocol.Total(successes)}
	}
	receipt := func(kind string, tries, limit uint, attempts, successes uint64) *ReceiptInfo {
		return &ReceiptInfo{Kind: kind, TriesLeft: tries, Limit: limit, AttemptsTotal: attempts, SuccessesTotal: successes}
	}
	for _, c := range []struct {
		name string
		last *ReceiptInfo
		st   *protocol.UserStatus
		ok   bool
	}{
		{"registered", receipt("registered", 5, 5, 0, 0), status(5, 5, 0, 0), true},
		{"registered, fewer tries", receipt("registered", 5, 5, 0, 0), status(4, 5, 0, 0), false},
		{"attempt", receipt("attempt", 3, 5, 7, 2), status(3, 5, 7, 2), true},
		{"attempt, more tries", receipt("attempt", 3, 5, 7, 2), status(5, 5, 7, 2), false},
		{"attempt, more attempts since", receipt("attempt", 3, 5, 7, 2), status(1, 5, 9, 2), true},
		{"final attempt revived", receipt("attempt", 0, 5, 7, 2), status(1, 5, 7, 2), true},
		{"final attempt, two tries", receipt("attempt", 0, 5, 7, 2), status(2, 5, 7, 2), false},
		{"released and confirmed", receipt("released", 5, 5, 7, 2), status(5, 5, 7, 3), true},
		{"released and confirmed, fewer tries", receipt("released", 5, 5, 7, 2), status(3, 5, 7, 3), false},
		{"released, never confirmed", receipt("released", 5, 5, 7, 2), status(4, 5, 7, 2), true},
		{"locked", receipt("locked", 0, 5, 7, 2), status(0, 5, 7, 2), true},
		{"locked, back with 3", receipt("locked", 0, 5, 7, 2), status(3, 5, 7, 2), false},
		{"another device confirmed", receipt("attempt", 3, 5, 7, 2), status(5, 5, 7, 3), true},
	} {
		err := statusFollows(c.last, c.st)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrStatusContradicts)) {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// Only two answers to a login's first message promise that nothing was
// counted: cofferd's 429 with Retry-After and the vault's busy. Every other
// failure, and any failure after the KE2 (the attempt is counted at KE1),
// is not a *NotCountedError.
func TestOnlyTwoAnswersPromiseNothingWasCounted(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	f.register("right", 10)
	vaultError := func(code protocol.Code) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) { w.Write(protocol.EncodeError(protocol.Errorf(code, "x"))) }
	}
	httpError := func(status int, retry string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			w.WriteHeader(status)
		}
	}
	for _, c := range []struct {
		name   string
		step   protocol.Type
		answer func(http.ResponseWriter)
		want   bool
	}{
		{"429 with Retry-After at login-start", protocol.TypeLoginStart, httpError(429, "3"), true},
		{"busy at login-start", protocol.TypeLoginStart, vaultError(protocol.CodeBusy), true},
		{"429 without Retry-After", protocol.TypeLoginStart, httpError(429, ""), false},
		{"503 at login-start", protocol.TypeLoginStart, httpError(503, "1"), false},
		{"504 at login-start", protocol.TypeLoginStart, httpError(504, ""), false},
		{"unavailable at login-start", protocol.TypeLoginStart, vaultError(protocol.CodeUnavailable), false},
		{"outcome-unknown at login-start", protocol.TypeLoginStart, vaultError(protocol.CodeOutcomeUnknown), false},
		{"429 with Retry-After at login-finish", protocol.TypeLoginFinish, httpError(429, "3"), false},
		{"busy at login-finish", protocol.TypeLoginFinish, vaultError(protocol.CodeBusy), false},
	} {
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != c.step {
				return false
			}
			c.answer(w)
			return true
		})
		_, err := f.login("right")
		var nc *NotCountedError
		if err == nil || errors.As(err, &nc) != c.want {
			t.Errorf("%s: %v (not counted: %v, want %v)", c.name, err, errors.As(err, &nc), c.want)
		}
		if c.want && nc.RetryAfter <= 0 {
			t.Errorf("%s: no wait", c.name)
		}
	}
}
