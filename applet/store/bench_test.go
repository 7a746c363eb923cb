package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

// Benchmarks (not part of the default run):
//
//	go test -run XXX -bench 'Scale|Throughput' -benchtime 2000x ./applet/store
//	COFFER_SCALE=1 go test -run TestScaleReport -v ./applet/store
//
// The million-record file store is built once per process (about 1 GB of
// sparse file in $TMPDIR, removed at exit).

var benchDirs struct {
	sync.Mutex
	dirs []string
}

func TestMain(m *testing.M) {
	code := m.Run()
	benchDirs.Lock()
	for _, d := range benchDirs.dirs {
		os.RemoveAll(d)
	}
	benchDirs.Unlock()
	os.Exit(code)
}

type scaleStore struct {
	s   *Store
	dev *timedDevice
	anc *timedAnchor
	ids [][]byte
}

// timedDevice and timedAnchor measure the time a commit waits for the
// medium (flush, anchor write), so that the store's own work can be told
// apart from fsync on a shared disk.
type timedDevice struct {
	storage.Device
	mu    sync.Mutex
	flush time.Duration
}

func (d *timedDevice) Flush() error {
	t0 := time.Now()
	err := d.Device.Flush()
	d.mu.Lock()
	d.flush += time.Since(t0)
	d.mu.Unlock()
	return err
}

func (d *timedDevice) waited() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flush
}

type timedAnchor struct {
	storage.Anchor
	mu    sync.Mutex
	write time.Duration
}

func (a *timedAnchor) Write(b [storage.AnchorSize]byte) (uint32, error) {
	t0 := time.Now()
	c, err := a.Anchor.Write(b)
	a.mu.Lock()
	a.write += time.Since(t0)
	a.mu.Unlock()
	return c, err
}

func (a *timedAnchor) waited() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.write
}

var scaleCache = map[int]*scaleStore{}

func benchRecord(i int) []byte {
	return []byte(fmt.Sprintf("attempts=%d;%s", i, bytes.Repeat([]byte{'r'}, 200)))
}

// buildScale returns a file store holding n records, built by loading them
// in batches in hashed-id order, as large commits apply them.
func buildScale(tb testing.TB, n int, flushLatency time.Duration) *scaleStore {
	tb.Helper()
	key := n
	if flushLatency > 0 {
		key = -n
	}
	if st := scaleCache[key]; st != nil {
		return st
	}
	dir, err := os.MkdirTemp("", "coffer-store-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	benchDirs.Lock()
	benchDirs.dirs = append(benchDirs.dirs, dir)
	benchDirs.Unlock()
	sectors := uint64(n)*5/2 + 1<<14
	img := filepath.Join(dir, "store.img")
	if err := preallocate(img, sectors); err != nil {
		tb.Fatal(err)
	}
	fdev, err := emulate.OpenFileDevice(img, sectors)
	if err != nil {
		tb.Fatal(err)
	}
	fanc, err := emulate.OpenFileAnchor(filepath.Join(dir, "anchor.rpmb"), testAuthKey)
	if err != nil {
		tb.Fatal(err)
	}
	dev := &timedDevice{Device: fdev}
	if flushLatency > 0 {
		dev.Device = emulate.WithFlushLatency(fdev, flushLatency)
	}
	anc := &timedAnchor{Anchor: fanc}
	opts := Options{SealingKey: testSealing}
	if err := Format(dev, anc, opts); err != nil {
		tb.Fatal(err)
	}
	s, err := Open(dev, anc, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ids := make([][]byte, n)
	hashes := make([][32]byte, n)
	order := make([]int, n)
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("user-%08d", i))
		hashes[i] = s.hashID(ids[i])
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(hashes[a][:], hashes[b][:]) })
	t0 := time.Now()
	const batch = 20000
	for i, j := range order {
		if err := s.Put(ids[j], benchRecord(j)); err != nil {
			tb.Fatal(err)
		}
		if i%batch == batch-1 || i == n-1 {
			if _, err := s.Commit(context.Background()); err != nil {
				tb.Fatal(err)
			}
		}
	}
	st := s.Stats()
	tb.Logf("built %d records in %v: height %d, %d MiB in use", n, time.Since(t0).Round(time.Millisecond),
		st.Height, (st.TotalSectors-st.FreeSectors)*storage.SectorSize>>20)
	sc := &scaleStore{s: s, dev: dev, anc: anc, ids: ids}
	scaleCache[key] = sc
	return sc
}

func benchGet(b *testing.B, sc *scaleStore) {
	r := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		id := sc.ids[r.IntN(len(sc.ids))]
		if _, ok, err := sc.s.Get(id); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func benchCommit(b *testing.B, sc *scaleStore) {
	r := rand.New(rand.NewPCG(3, 4))
	before := sc.s.Stats()
	b.ResetTimer()
	for b.Loop() {
		i := r.IntN(len(sc.ids))
		sc.s.Put(sc.ids[i], benchRecord(i+1))
		if _, err := sc.s.Commit(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	after := sc.s.Stats()
	commits := after.Commits - before.Commits
	if commits > 0 {
		b.ReportMetric(float64(after.BytesWritten-before.BytesWritten)/float64(commits), "dev-bytes/commit")
	}
}

// BenchmarkScale measures Get and single-record Put+Commit on file stores
// of 1,000 and 1,000,000 records (real fsync, no injected latency).
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("Get/records=%d", n), func(b *testing.B) { benchGet(b, buildScale(b, n, 0)) })
		b.Run(fmt.Sprintf("Commit/records=%d", n), func(b *testing.B) { benchCommit(b, buildScale(b, n, 0)) })
	}
}

// BenchmarkThroughput: Put+Commit from 1, 10 and 200 concurrent writers on
// a file store of 1,000 records whose flush takes 2 ms (as eMMC might).
func BenchmarkThroughput(b *testing.B) {
	for _, writers := range []int{1, 10, 200} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			sc := buildScale(b, 1000, 2*time.Millisecond)
			before := sc.s.Stats()
			var next sync.Mutex
			left := b.N
			b.ResetTimer()
			t0 := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						next.Lock()
						if left == 0 {
							next.Unlock()
							return
						}
						left--
						next.Unlock()
						u := (w*7919 + i) % len(sc.ids)
						sc.s.Put(sc.ids[u], benchRecord(i))
						if _, err := sc.s.Commit(context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(t0).Seconds()
			after := sc.s.Stats()
			b.ReportMetric(float64(after.Commits-before.Commits)/el, "commits/s")
			b.ReportMetric(float64(b.N)/el, "records/s")
		})
	}
}

// TestScaleReport prints the scale figures of issue 3 in one place: the
// Get and Commit cost ratio between 1M and 1K records, write amplification,
// and the RPMB budget. Set COFFER_SCALE=1 (about two minutes and 1 GB of
// disk). Measurements of the two sizes are interleaved over several rounds
// and the fastest round is kept, to shed interference from other load.
func TestScaleReport(t *testing.T) {
	if os.Getenv("COFFER_SCALE") == "" {
		t.Skip("set COFFER_SCALE=1 to build a million-record store")
	}
	type res struct {
		get, commit, work time.Duration // work: commit minus waits for flush and anchor
		bytes             float64
		height            int
	}
	sizes := []int{1000, 1000000}
	stores := map[int]*scaleStore{}
	best := map[int]*res{}
	for _, n := range sizes {
		stores[n] = buildScale(t, n, 0)
		best[n] = &res{get: time.Hour, commit: time.Hour, work: time.Hour}
	}
	r := rand.New(rand.NewPCG(5, 6))
	const rounds, gets, commits = 7, 5000, 60
	for round := 0; round < rounds; round++ {
		for _, n := range sizes {
			sc, b := stores[n], best[n]
			for i := 0; i < 200; i++ { // warm up
				sc.s.Get(sc.ids[r.IntN(len(sc.ids))])
			}
			t0 := time.Now()
			for i := 0; i < gets; i++ {
				if _, ok, err := sc.s.Get(sc.ids[r.IntN(len(sc.ids))]); !ok || err != nil {
					t.Fatal(ok, err)
				}
			}
			b.get = min(b.get, time.Since(t0)/gets)
			before := sc.s.Stats()
			w0 := sc.dev.waited() + sc.anc.waited()
			t0 = time.Now()
			for i := 0; i < commits; i++ {
				j := r.IntN(len(sc.ids))
				sc.s.Put(sc.ids[j], benchRecord(j+i))
				if _, err := sc.s.Commit(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			el := time.Since(t0)
			waited := sc.dev.waited() + sc.anc.waited() - w0
			b.commit = min(b.commit, el/commits)
			b.work = min(b.work, (el-waited)/commits)
			after := sc.s.Stats()
			b.bytes = float64(after.BytesWritten-before.BytesWritten) / float64(after.Commits-before.Commits)
			b.height = after.Height
		}
	}
	small, large := best[1000], best[1000000]
	ratio := func(a, b time.Duration) float64 { return float64(b) / float64(a) }
	t.Logf("Get:                    1K %v, 1M %v, ratio %.2f", small.get, large.get, ratio(small.get, large.get))
	t.Logf("Commit (durable):       1K %v, 1M %v, ratio %.2f", small.commit, large.commit, ratio(small.commit, large.commit))
	t.Logf("Commit (store's work):  1K %v, 1M %v, ratio %.2f  (excluding fsync and the anchor file's fsyncs)", small.work, large.work, ratio(small.work, large.work))
	t.Logf("tree height: 1K %d, 1M %d", small.height, large.height)
	t.Logf("bytes written per single-record commit: 1K %.0f, 1M %.0f (+ one 256-byte RPMB block in 5 RPMB frames)", small.bytes, large.bytes)
	// Recovery: Open walks and verifies every node.
	for _, n := range sizes {
		sc := stores[n]
		if err := sc.s.Close(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		s, err := Open(sc.dev, sc.anc, Options{SealingKey: testSealing})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Open (verifies the whole tree) of %d records: %v", n, time.Since(t0).Round(time.Millisecond))
		sc.s = s
	}
	logRPMBBudget(t, 100*time.Millisecond)
}

func logRPMBBudget(t *testing.T, interval time.Duration) {
	perHour := float64(time.Hour / interval)
	hours := float64(1<<32) / perHour
	t.Logf("RPMB: at most %.0f anchor writes/hour at a %v minimum interval; 2^32 writes last %.0f hours = %.1f years of continuous maximum-rate commits",
		perHour, interval, hours, hours/24/365.25)
}

// TestAnchorWriteRate drives continuous commits with the hardware interval
// and checks that anchor writes stay within 1/interval, then logs the RPMB
// lifetime that follows.
func TestAnchorWriteRate(t *testing.T) {
	d := time.Second
	if testing.Short() {
		d = 500 * time.Millisecond
	}
	opts := testOpts(0)
	opts.MinAnchorInterval = 100 * time.Millisecond
	s, _, _, rp := newMemStore(t, 1<<14, opts)
	c0, w0 := rp.Counter(), s.Stats().AnchorWrites
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	var ops int
	var mu sync.Mutex
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				s.Put(id(w*1000+i%50), []byte("x"))
				if _, err := s.Commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ops++
				mu.Unlock()
			}
		}()
	}
	t0 := time.Now()
	wg.Wait()
	el := time.Since(t0)
	writes := s.Stats().AnchorWrites - w0
	if uint64(rp.Counter()-c0) != writes {
		t.Fatalf("RPMB counter moved %d, store counted %d anchor writes", rp.Counter()-c0, writes)
	}
	limit := uint64(el/opts.MinAnchorInterval) + 1
	if writes > limit || writes == 0 {
		t.Fatalf("%d anchor writes in %v, limit %d", writes, el, limit)
	}
	rate := float64(writes) / el.Hours()
	t.Logf("%d Put+Commit in %v: %d anchor writes (%.0f/hour)", ops, el.Round(time.Millisecond), writes, rate)
	logRPMBBudget(t, opts.MinAnchorInterval)
}
