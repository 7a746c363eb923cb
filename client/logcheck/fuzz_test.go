package logcheck_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/cofferhsm/coffer/client/logcheck"
)

// FuzzHTTPSourceEntries: whatever bytes a log's host serves as an entry
// bundle, Entries either fails or returns exactly the entries asked for,
// each within the bundle it read.
func FuzzHTTPSourceEntries(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 2, 'b', 'c'}, uint8(0), uint8(2), uint16(2))
	f.Add(joinBundle([][]byte{[]byte("x"), []byte("yy"), []byte("zzz")}), uint8(1), uint8(3), uint16(3))
	f.Add([]byte{0xff, 0xff, 1}, uint8(0), uint8(1), uint16(300))
	f.Add([]byte{}, uint8(0), uint8(0), uint16(0))
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(*body.Load())
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	src := logcheck.HTTPSource(u, nil)
	f.Fuzz(func(t *testing.T, b []byte, from, n uint8, size uint16) {
		body.Store(&b)
		to := uint64(from) + uint64(n)
		if to > uint64(size) {
			return
		}
		es, err := src.Entries(context.Background(), uint64(from), to, uint64(size))
		if err != nil {
			return
		}
		if uint64(len(es)) != to-uint64(from) {
			t.Fatalf("%d entries for %d to %d", len(es), from, to)
		}
		total := 0
		for _, e := range es {
			total += len(e)
		}
		if total > len(b)*int(1+(to+255)/256) {
			t.Fatalf("%d bytes of entries from a %d-byte bundle", total, len(b))
		}
	})
}
