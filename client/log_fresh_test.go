package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// freshClock is the clock of a freshness test: the client's and the log's
// witnesses' (an honest witness cosigns "now").
type freshClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *freshClock) get() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *freshClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const week = 168 * time.Hour

// withMaxAge pins the log's policy with max-age 168h and runs the log's
// witnesses and the client on one clock.
func withMaxAge(t *testing.T, cfg *Config, d *devLog) *freshClock {
	t.Helper()
	c := &freshClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	p := d.l.Policy(2)
	p.MaxAge = week
	if _, err := cfg.PinLogPolicy([]byte(p.String())); err != nil {
		t.Fatal(err)
	}
	d.l.Now = c.get
	return c
}

// newFreshFixture is a vault under a policy with max-age 168h, on the
// test's clock, contacted once: pinned, with the log's checkpoint fresh.
func newFreshFixture(t *testing.T) (*fixture, *freshClock) {
	t.Helper()
	f := newFixture(t, fakehost.Options{})
	clock := withMaxAge(t, f.cfg, f.log)
	f.opts.now = clock.get
	f.connect()
	return f, clock
}

// The adversary runs the vault's host: after the log revokes the vault's
// release, it keeps serving the last checkpoint from before, properly
// signed and witnessed. Without max-age the client cannot tell; with
// max-age 168h, once the checkpoint's cosignatures are over a week old,
// the vault is refused, naming the age and the ways past.
func TestOldWitnessedCheckpointRefused(t *testing.T) {
	ctx := context.Background()
	f, clock := newFreshFixture(t)
	id := f.host.VaultIdentity()
	frozen := f.log.l.Checkpoint(2) // the last one before the revocation
	f.log.revoke(releaselog.KindRelease, id.FirmwareHash, "key extraction bug")
	host := &releaselogtest.Source{Log: f.log.l, Frozen: frozen}
	f.opts.LogSource = host

	// Within the week the frozen copy is as good as any: nothing says it
	// is old yet.
	clock.add(6 * 24 * time.Hour)
	f.connect()
	// Past it, refused: the error says how old, and how to get past.
	clock.add(2 * 24 * time.Hour)
	_, err := Connect(ctx, f.cfg, f.opts)
	if !errors.Is(err, ErrStaleLog) || !errors.Is(err, releaselog.ErrStaleCheckpoint) {
		t.Fatalf("a week-old checkpoint: %v", err)
	}
	for _, want := range []string{"8 days ago", "max-age 168h", "--insecure", "coffer log pin FILE --url URL", "coffer-release refresh", `"test vault"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	// --insecure lets it through for the run, saying so.
	var notes noticeLog
	opts := f.opts
	opts.AllowUnlogged, opts.Notice = true, notes.add
	if _, err := Connect(ctx, f.cfg, opts); err != nil {
		t.Fatalf("with --insecure: %v", err)
	}
	if len(notes.got) != 1 || notes.got[0].Kind != NoticeUnlogged || !strings.Contains(notes.got[0].Text, "INSECURE") ||
		!strings.Contains(notes.got[0].Text, "fresh release log") {
		t.Fatalf("notices %+v", notes.got)
	}
	// The honest log, freshly cosigned, shows the revocation.
	f.opts.LogSource = f.log.src
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("the fresh log: %v", err)
	}
}

// A first contact through a host that serves an old checkpoint: refused
// before anything is pinned. One fresh cosignature of the two the quorum
// needs is not enough, nor one dated hours ahead of the clock.
func TestStaleCheckpointCosignatures(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		times func(now time.Time) []time.Time
		fresh bool
	}{
		{"both a month old", func(n time.Time) []time.Time { return []time.Time{n.Add(-720 * time.Hour), n.Add(-720 * time.Hour)} }, false},
		{"one fresh, one old, quorum 2", func(n time.Time) []time.Time { return []time.Time{n, n.Add(-720 * time.Hour)} }, false},
		{"one fresh, one dated 3 hours ahead", func(n time.Time) []time.Time { return []time.Time{n, n.Add(3 * time.Hour)} }, false},
		{"an hour old and a day old", func(n time.Time) []time.Time { return []time.Time{n.Add(-time.Hour), n.Add(-24 * time.Hour)} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fakehost.Options{})
			clock := withMaxAge(t, f.cfg, f.log)
			f.opts.now = clock.get
			f.opts.LogSource = &releaselogtest.Source{Log: f.log.l, Frozen: f.log.l.CheckpointAtTimes(f.log.l.Size(), tc.times(clock.get())...)}
			_, err := Connect(ctx, f.cfg, f.opts)
			if tc.fresh != (err == nil) || err != nil && !errors.Is(err, ErrStaleLog) {
				t.Fatalf("fresh %v: %v", tc.fresh, err)
			}
			if !tc.fresh && (f.cfg.BundleHash != "" || f.cfg.Vault != nil) {
				t.Fatal("a vault checked against a stale log was pinned")
			}
		})
	}
}

// The user pins a log URL of their own (the log's own address, or a
// mirror): read at every contact besides the vault's host, which can no
// longer hold the client back. The host's frozen copy then does not hide
// the revocation; with no revocation, the vault passes though its host is
// stale, and the client says its host serves an older copy.
func TestPinnedLogURLOutrunsAStaleHost(t *testing.T) {
	ctx := context.Background()
	f, clock := newFreshFixture(t)
	id := f.host.VaultIdentity()
	frozen := f.log.l.Checkpoint(2)
	f.opts.LogSource = &releaselogtest.Source{Log: f.log.l, Frozen: frozen}
	mirror := httptest.NewServer(f.log.src)
	defer mirror.Close()
	if _, err := f.cfg.PinLogURL(mirror.URL + "/"); err != nil {
		t.Fatal(err)
	}
	clock.add(10 * 24 * time.Hour)
	f.log.release(50, "qemu", sum256("another release")) // the log moved on
	var notes noticeLog
	f.opts.Notice = notes.add
	f.connect()
	if k := notes.kinds(); len(k) != 1 || k[0] != NoticeStaleLog {
		t.Fatalf("notices %+v", notes.got)
	}
	if f.cfg.Log.View.Size != f.log.l.Size() {
		t.Fatalf("view at %d of %d", f.cfg.Log.View.Size, f.log.l.Size())
	}
	f.log.revoke(releaselog.KindRelease, id.FirmwareHash, "key extraction bug")
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a revocation the mirror serves, behind a frozen host: %v", err)
	}
	// A URL that is not one is refused when pinned.
	for _, bad := range []string{"ftp://log.example/", "log.example", "https://user:pw@log.example/"} {
		if _, err := f.cfg.PinLogURL(bad); err == nil {
			t.Errorf("log URL %q pinned", bad)
		}
	}
}

// realmLogs serves each realm host's /v1/log/ from a source of its own, as
// a transport in front of the hosts; gate, when set, holds a host's
// identity request until it is closed.
type realmLogs struct {
	logs map[string]*releaselogtest.Source // by host:port
	gate map[string]chan struct{}
	seen map[string]chan struct{} // closed once that host's log was asked for
	once sync.Map
}

func (rl *realmLogs) RoundTrip(req *http.Request) (*http.Response, error) {
	h := req.URL.Host
	if src := rl.logs[h]; src != nil && strings.HasPrefix(req.URL.Path, "/v1/log/") {
		if c := rl.seen[h]; c != nil {
			if _, done := rl.once.LoadOrStore(h, true); !done {
				close(c)
			}
		}
		rec := httptest.NewRecorder()
		src.ServeHTTP(rec, req)
		return rec.Result(), nil
	}
	if g := rl.gate[h]; g != nil && req.URL.Path == "/v1/identity" {
		select {
		case <-g:
		case <-time.After(10 * time.Second):
		case <-req.Context().Done():
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

func hostOf(t *testing.T, r *testRealm) string {
	u, err := url.Parse(r.url)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A realm set of three hosts. The log revokes realm A's identity; realm
// A's host keeps serving the checkpoint from before, realms B and C's the
// log as it is. A is refused, even though it is reached through the host
// that hides the revocation and checked before the others (its identity
// answers first): the client reads the log from every host before it
// checks any realm.
func TestRealmStaleHostCannotHideARevocation(t *testing.T) {
	ctx := context.Background()
	f := newRealmFixture(t, 2, 3, realmOptions{})
	a, b, c := f.realmByName("A"), f.realmByName("B"), f.realmByName("C")
	frozen := f.log.l.Checkpoint(2)
	f.log.revoke(releaselog.KindIdentity, releaselog.BundleHash(a.bundle), "device stolen")
	rl := &realmLogs{
		logs: map[string]*releaselogtest.Source{
			hostOf(t, a): {Log: f.log.l, Frozen: frozen},
			hostOf(t, b): {Log: f.log.l, Cosigners: 2},
			hostOf(t, c): {Log: f.log.l, Cosigners: 2},
		},
		seen: map[string]chan struct{}{hostOf(t, a): make(chan struct{})},
	}
	// B's and C's identities wait until A's host was asked for the log:
	// a client that checks each realm against its own host alone checks
	// A first, against the frozen copy.
	rl.gate = map[string]chan struct{}{hostOf(t, b): rl.seen[hostOf(t, a)], hostOf(t, c): rl.seen[hostOf(t, a)]}
	f.opts.LogSource, f.opts.HTTPClient = nil, &http.Client{Transport: rl}
	st, err := f.set().Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range st.Realms {
		if bad := rr.Name == "A"; bad != (rr.Err != nil) || bad && !errors.Is(rr.Err, ErrRevoked) {
			t.Errorf("realm %s: %v", rr.Name, rr.Err)
		}
	}
	if e := realmByName(f.cfg, "A"); e.BundleHash != "" {
		t.Fatal("the revoked realm was pinned")
	}
	if f.cfg.Log.View.Size != f.log.l.Size() {
		t.Fatalf("view at %d of %d", f.cfg.Log.View.Size, f.log.l.Size())
	}
}
