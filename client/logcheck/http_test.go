package logcheck_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/internal/tlogtest"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// mirror is cofferd's /v1/log/ handler over a real tessera log directory,
// behind a hook that lets the test play a dishonest cofferd.
type mirror struct {
	mu        sync.Mutex
	requested []string
	rewrite   func(path string, body []byte) []byte // nil: honest
}

func (m *mirror) serve(t *testing.T, dir string) *url.URL {
	t.Helper()
	rl, err := host.OpenReleaseLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.requested = append(m.requested, strings.TrimPrefix(r.URL.Path, "/v1/log/"))
		rewrite := m.rewrite
		m.mu.Unlock()
		rec := httptest.NewRecorder()
		rl.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rewrite != nil && rec.Code == http.StatusOK {
			body = rewrite(strings.TrimPrefix(r.URL.Path, "/v1/log/"), body)
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/v1/log") // without the slash: HTTPSource adds it
	return u
}

func (m *mirror) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.requested
	m.requested = nil
	return r
}

func releases(from, n int) []*releaselog.Entry {
	var es []*releaselog.Entry
	for i := range n {
		es = append(es, releaselogtest.Release(uint64(from+i), "qemu", hash(string(rune(from+i)))))
	}
	return es
}

// TestHTTPSourceFollowsARealLog reads a log written by tessera's POSIX
// driver, cosigned by two witnesses over tlog-witness, through cofferd's
// handler: Update follows it incrementally across a partial bundle that
// fills (read again in full) and into the next one, each entry once.
func TestHTTPSourceFollowsARealLog(t *testing.T) {
	ctx := context.Background()
	l := tlogtest.New(t, "releases.coffer.test", 2)
	var m mirror
	src := logcheck.HTTPSource(m.serve(t, l.Dir), nil)
	var v releaselog.View

	l.AddEntries(releases(1, 100)...)
	cp, got, err := logcheck.Update(ctx, src, l.Policy, &v)
	if err != nil || cp.Size != 100 || len(got) != 100 || got[99].Entry.Release.Version != 100 || len(cp.Witnessed) != 2 {
		t.Fatalf("first update: %v, %d entries", err, len(got))
	}
	if req := m.take(); !contains(req, "tile/entries/000.p/100") {
		t.Fatalf("first update read %v", req)
	}

	l.AddEntries(releases(101, 200)...) // 300: bundle 0 full, bundle 1 partial
	cp, got, err = logcheck.Update(ctx, src, l.Policy, &v)
	if err != nil || cp.Size != 300 || len(got) != 200 || got[0].Index != 100 || got[199].Entry.Release.Version != 300 {
		t.Fatalf("second update: %v, %d entries", err, len(got))
	}
	if req := m.take(); !contains(req, "tile/entries/000") || !contains(req, "tile/entries/001.p/44") {
		t.Fatalf("second update read %v", req)
	}
	for i, g := range got {
		if g.Index != uint64(100+i) || g.Entry.Release.Version != uint64(101+i) {
			t.Fatalf("entry %d: index %d version %d", i, g.Index, g.Entry.Release.Version)
		}
	}

	// Nothing new: the same checkpoint, no entries, the view unchanged.
	if _, got, err = logcheck.Update(ctx, src, l.Policy, &v); err != nil || len(got) != 0 || v.Size != 300 {
		t.Fatalf("an update with nothing new: %v, %d entries, size %d", err, len(got), v.Size)
	}
}

// TestHTTPSourceCatchesADishonestCofferd: a cofferd that alters an entry
// bundle, cuts one short, replays an old checkpoint or sends an endless
// body is refused, and the verifier's view stays where it was.
func TestHTTPSourceCatchesADishonestCofferd(t *testing.T) {
	ctx := context.Background()
	l := tlogtest.New(t, "releases.coffer.test", 1)
	var m mirror
	src := logcheck.HTTPSource(m.serve(t, l.Dir), nil)
	var v releaselog.View
	l.AddEntries(releases(1, 10)...)
	if _, _, err := logcheck.Update(ctx, src, l.Policy, &v); err != nil {
		t.Fatal(err)
	}
	var oldCheckpoint []byte
	m.rewrite = func(p string, b []byte) []byte {
		if p == "checkpoint" {
			oldCheckpoint = bytes.Clone(b)
		}
		return b
	}
	if _, _, err := logcheck.Update(ctx, src, l.Policy, &v); err != nil {
		t.Fatal(err)
	}
	l.AddEntries(releases(11, 270)...) // 280 entries: one full bundle, one partial

	for _, c := range []struct {
		name    string
		rewrite func(p string, b []byte) []byte
		want    error  // nil: any error
		says    string // what the error must say
	}{
		{"a byte of an entry changed", func(p string, b []byte) []byte {
			if strings.HasPrefix(p, "tile/entries/") {
				b = bytes.Clone(b)
				b[len(b)-1] ^= 1
			}
			return b
		}, releaselog.ErrInconsistent, "do not hash"},
		{"an entry swapped for another valid one", func(p string, b []byte) []byte {
			if p == "tile/entries/001.p/24" {
				return swapLastEntry(t, b, releaselogtest.Release(999, "qemu", hash("rogue")))
			}
			return b
		}, releaselog.ErrInconsistent, "do not hash"},
		{"the last entry dropped", func(p string, b []byte) []byte {
			if p == "tile/entries/001.p/24" {
				return dropLastEntry(b)
			}
			return b
		}, nil, "holds 23 entries"},
		{"an entry appended", func(p string, b []byte) []byte {
			if p == "tile/entries/001.p/24" {
				return joinBundle(append(splitBundle(b), []byte("extra")))
			}
			return b
		}, nil, "holds 25 entries, not the 24"},
		{"an endless bundle", func(p string, b []byte) []byte {
			if strings.HasPrefix(p, "tile/entries/") {
				return bytes.Repeat([]byte{0, 1, 'x'}, logcheck.MaxBundleResponse/3+1)
			}
			return b
		}, nil, "may hold"},
	} {
		m.rewrite = c.rewrite
		_, got, err := logcheck.Update(ctx, src, l.Policy, &v)
		if err == nil || c.want != nil && !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || v.Size != 10 || got != nil {
			t.Errorf("%s: %v, view at %d", c.name, err, v.Size)
		}
	}
	// A stale checkpoint at the view's own size cannot be told from a log
	// that did not grow: no entries, no error, the view unchanged.
	m.rewrite = func(p string, b []byte) []byte {
		if p == "checkpoint" {
			return oldCheckpoint
		}
		return b
	}
	if cp, got, err := logcheck.Update(ctx, src, l.Policy, &v); err != nil || len(got) != 0 || cp.Size != 10 || v.Size != 10 {
		t.Fatalf("a stale checkpoint at the view's size: %v, %d entries, view at %d", err, len(got), v.Size)
	}
	// A rewind below the view is refused: move the view, then replay the
	// old checkpoint.
	m.rewrite = nil
	if _, _, err := logcheck.Update(ctx, src, l.Policy, &v); err != nil || v.Size != 280 {
		t.Fatalf("honest again: %v, view at %d", err, v.Size)
	}
	m.rewrite = func(p string, b []byte) []byte {
		if p == "checkpoint" {
			return oldCheckpoint
		}
		return b
	}
	// A rewound (older, witnessed) checkpoint teaches nothing and moves
	// nothing: stale, not a fork.
	if _, _, err := logcheck.Update(ctx, src, l.Policy, &v); !errors.Is(err, logcheck.ErrStale) || v.Size != 280 {
		t.Fatalf("a rewound checkpoint: %v, view at %d", err, v.Size)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// splitBundle splits an entry bundle into its entries (tlog-tiles: a
// 2-byte big-endian length before each).
func splitBundle(b []byte) [][]byte {
	var es [][]byte
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		es, b = append(es, b[2:2+n]), b[2+n:]
	}
	return es
}

func joinBundle(es [][]byte) []byte {
	var b []byte
	for _, e := range es {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}

func swapLastEntry(t *testing.T, b []byte, e *releaselog.Entry) []byte {
	data, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	es := splitBundle(b)
	es[len(es)-1] = data
	return joinBundle(es)
}

func dropLastEntry(b []byte) []byte {
	es := splitBundle(b)
	return joinBundle(es[:len(es)-1])
}
