package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

func validKE1(t testing.TB) []byte {
	t.Helper()
	_, ke1, err := opaque.NewClientLogin(rand.Reader, []byte("some password"))
	if err != nil {
		t.Fatal(err)
	}
	return ke1
}

func loginStart(t testing.TB, v *Vault, user string) (*protocol.LoginStartReply, error) {
	req, _ := loginStartRequest(t, user)
	var start protocol.LoginStartReply
	err := protocol.Decode(v.handle(context.Background(), req), protocol.TypeLoginStart, &start)
	return &start, err
}

// Concurrent KE1s for one user never yield more counted attempts than tries
// left: exactly limit of them get an attempt receipt, each with its own
// tries-left value, and the rest see the lock.
func TestConcurrentLoginStartsNeverExceedTheLimit(t *testing.T) {
	const limit, racers = 5, 40
	h := newHarness(t, Options{})
	register(t, h.client("gina"), "right", limit)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		attempts = map[uint]int{}
		locked   int
	)
	signer := h.v.Identity().SigningKey
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start, err := loginStart(t, h.v, "gina")
			if err != nil {
				t.Error(err)
				return
			}
			r, err := start.Receipt.Verify(signer)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch r.Kind {
			case protocol.ReceiptAttempt:
				attempts[r.TriesLeft]++
			case protocol.ReceiptLocked:
				locked++
			}
		}()
	}
	wg.Wait()
	if len(attempts) != limit || locked != racers-limit {
		t.Fatalf("%d distinct counted attempts and %d locked, want %d and %d", len(attempts), locked, limit, racers-limit)
	}
	for left, n := range attempts {
		if n != 1 || left >= limit {
			t.Fatalf("tries-left %d was reported %d times", left, n)
		}
	}
	if r := h.committedRecord("gina"); r.counter() != limit || r.State != stateLocked {
		t.Fatalf("committed record %+v", r)
	}
}

// Invariant 1 under power cuts: commits fail at random, the power is cut and
// the vault reboots; over the whole run the number of KE2s answered on the
// real record never exceeds the limit, and at every answer the committed
// counter already covers it.
func TestPowerCutsNeverGrantFreeGuesses(t *testing.T) {
	const limit = 6
	for run := 0; run < 30; run++ {
		h := newHarness(t, Options{})
		register(t, h.client("hal"), "right", limit)
		rng := mrand.New(mrand.NewPCG(uint64(run), 7))
		answered := 0
		for step := 0; step < 40; step++ {
			cut := rng.IntN(3) == 0
			h.store.FailCommit = func() error {
				if cut {
					return memstore.ErrPowerCut
				}
				return nil
			}
			start, err := loginStart(t, h.v, "hal")
			if cut && err != nil {
				wantCode(t, err, protocol.CodeUnavailable)
				h.powerCut()
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			r, _ := start.Receipt.Verify(h.v.Identity().SigningKey)
			if cut && r.Kind != protocol.ReceiptLocked {
				t.Fatalf("run %d: a KE2 was answered although its commit failed", run)
			}
			if r.Kind == protocol.ReceiptAttempt {
				answered++
				if c := h.committedRecord("hal"); c.counter() < uint64(answered) {
					t.Fatalf("run %d: %d KE2s answered but committed counter is %d", run, answered, c.counter())
				}
			}
			if rng.IntN(4) == 0 {
				h.powerCut()
			}
		}
		if answered > limit {
			t.Fatalf("run %d: %d KE2s answered on the real record, limit %d", run, answered, limit)
		}
	}
}

// Unknown users, locked users and wrong passwords look alike before KE3:
// replies of the same size, a fake KE2 that no password opens.
func TestUnknownLockedAndWrongPasswordRepliesHaveTheSameShape(t *testing.T) {
	h := newHarness(t, Options{})
	register(t, h.client("ivan"), "right", 2)
	register(t, h.client("judy"), "right", 1)
	h.client("judy").Login(context.Background(), []byte("wrong")) // judy is now locked

	size := func(user string) int {
		req, _ := loginStartRequest(t, user)
		reply := h.v.handle(context.Background(), req)
		if typ, err := protocol.PeekType(reply); err != nil || typ != protocol.TypeLoginStart {
			t.Fatalf("%s: %v %v", user, typ, err)
		}
		return len(reply)
	}
	real, unknown, locked := size("ivan"), size("mary"), size("judy") // ids of equal length
	if real != unknown || real != locked {
		t.Fatalf("reply sizes: real %d, unknown %d, locked %d", real, unknown, locked)
	}
	// A fake record is stable per user id: the same KE2 credential part
	// (evaluated element under the fake key) each time is not observable,
	// but two logins of an unknown user must both fail in the same way.
	for i := 0; i < 2; i++ {
		_, r, err := h.client("mallory").Login(context.Background(), []byte("anything"))
		if !errors.Is(err, testclient.ErrWrongPassword) || r.Kind != protocol.ReceiptAttempt {
			t.Fatalf("unknown user login: %v %+v", err, r)
		}
	}
	if _, ok := h.store.Committed(userKey([]byte("mallory"))); ok {
		t.Fatal("a login for an unknown user created a record")
	}
}

func TestFakeRecordsAreStablePerUser(t *testing.T) {
	h := newHarness(t, Options{})
	a1, k1, err := opaque.FakeRecord(h.v.id.fakeSeed, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	a2, k2, _ := opaque.FakeRecord(h.v.id.fakeSeed, []byte("x"))
	b, _, _ := opaque.FakeRecord(h.v.id.fakeSeed, []byte("y"))
	if !bytes.Equal(a1.Bytes(), a2.Bytes()) || k1 != k2 || bytes.Equal(a1.Bytes(), b.Bytes()) {
		t.Fatal("fake records are not a stable function of the user id")
	}
	if h.v.fakeGeneration([]byte("x")) != h.v.fakeGeneration([]byte("x")) || h.v.fakeGeneration([]byte("x"))>>63 != 1 {
		t.Fatal("fake generation unstable or of another shape")
	}
}

func TestBusyVaultRefusesBeforeCounting(t *testing.T) {
	h := newHarness(t, Options{MaxPendingLogins: 2})
	register(t, h.client("kim"), "right", 5)
	for i := 0; i < 2; i++ {
		if _, err := loginStart(t, h.v, "kim"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := loginStart(t, h.v, "kim")
	wantCode(t, err, protocol.CodeBusy)
	if r := h.committedRecord("kim"); r.counter() != 2 {
		t.Fatalf("a refused login was counted: counter %d", r.counter())
	}
}

// Guesses made while the user is between KE1 and KE3 are reported to the
// user by the release receipt: an operator cannot hide its guessing behind
// the user's own login.
func TestGuessesDuringALoginAreReportedToTheUser(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("vera")
	key := register(t, c, "right", 6)
	c.Login(context.Background(), []byte("wrong")) // 1 before the user's login
	finish, _, err := loginPending(t, h, "vera", "right")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // 2 by someone else while the user is mid-login
		c.Login(context.Background(), []byte("guess"))
	}
	released, err := finish()
	if err != nil {
		t.Fatal(err)
	}
	if released.FailedSinceSuccess != 3 {
		t.Fatalf("the release reported %d failed attempts since the last success, want 3 (1 before the login, 2 during it)", released.FailedSinceSuccess)
	}
	// That login was never confirmed (the test's client kept the
	// session), so it is not a success: the next login is told of all
	// four attempts before it, the unconfirmed one included.
	s := mustLogin(t, c, "right", key)
	if s.Released.FailedSinceSuccess != 4 {
		t.Fatalf("after an unconfirmed login, %d failures reported, want 4", s.Released.FailedSinceSuccess)
	}
	mustConfirm(t, s, key)
	// After a confirmed success the next login sees a clean slate.
	s = mustLogin(t, c, "right", key)
	if s.Released.FailedSinceSuccess != 0 {
		t.Fatalf("after a confirmed success, %d failures reported", s.Released.FailedSinceSuccess)
	}
	mustConfirm(t, s, key)
	if r := h.committedRecord("vera"); r.Successes != 2 || r.counter() != 0 {
		t.Fatalf("record after two confirmed successes: %+v", r)
	}
}
