package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     testing.TB
	store *testStore
	clock *fakeClock
	opts  Options
	v     *Vault
}

func newHarness(t testing.TB, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, store: newTestStore(t), clock: newFakeClock(), opts: opts}
	h.opts.Create = true
	if h.opts.Now == nil {
		h.opts.Now = h.clock.Now
	}
	h.boot()
	return h
}

// boot starts a vault on the harness's store, as a power-on does: nothing
// from the previous vault's RAM survives.
func (h *harness) boot() {
	h.t.Helper()
	if h.v != nil {
		h.v.Close()
	}
	v, err := New(context.Background(), h.store, h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.v = v
}

// powerCut drops what was staged and not committed, then boots.
func (h *harness) powerCut() {
	h.store.Crash()
	h.boot()
}

func (h *harness) roundTrip(ctx context.Context, req []byte) ([]byte, error) {
	return h.v.handle(ctx, req), nil
}

func (h *harness) client(user string) *testclient.Client {
	return &testclient.Client{RoundTrip: h.roundTrip, Identity: h.v.Identity(), UserID: []byte(user)}
}

func (h *harness) committedRecord(user string) *record {
	h.t.Helper()
	b, ok := h.store.Committed(userKey([]byte(user)))
	if !ok {
		return nil
	}
	r, err := parseRecord(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func newBackupKey(t testing.TB) []byte {
	k := make([]byte, protocol.BackupKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func register(t testing.TB, c *testclient.Client, password string, limit uint) []byte {
	t.Helper()
	key := newBackupKey(t)
	if _, err := c.Register(context.Background(), []byte(password), key, limit); err != nil {
		t.Fatalf("register: %v", err)
	}
	return key
}

func mustLogin(t testing.TB, c *testclient.Client, password string, key []byte) *testclient.Session {
	t.Helper()
	s, _, err := c.Login(context.Background(), []byte(password))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if !bytes.Equal(s.BackupKey, key) {
		t.Fatal("login released another key")
	}
	return s
}

// mustConfirm confirms s's login with a release, the first command of the
// session, and checks the key released again.
func mustConfirm(t testing.TB, s *testclient.Session, key []byte) {
	t.Helper()
	k, _, err := s.Release(context.Background())
	if err != nil {
		t.Fatalf("confirming release: %v", err)
	}
	if !bytes.Equal(k, key) {
		t.Fatal("the confirming release gave another key")
	}
}

func wantCode(t testing.TB, err error, code protocol.Code) {
	t.Helper()
	var pe *protocol.Error
	if err == nil || !errorsAs(err, &pe) || pe.Code != code {
		t.Fatalf("got error %v, want code %d (%s)", err, code, code)
	}
}
