package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
)

// TestConcurrentPutCommit: many goroutines each keep a counter record,
// incrementing it with Get+Put+Commit, while readers walk the tree. No update
// may be lost, in RAM or on the device, and commits must be grouped.
func TestConcurrentPutCommit(t *testing.T) {
	writers, iters := 64, 30
	if testing.Short() {
		writers, iters = 24, 10
	}
	opts := testOpts(5) // small nodes: commits split and rewrite shared paths
	dev := storetest.NewCrashDevice(1 << 14)
	dev.SetFlushLatency(time.Millisecond)
	anc, rp := storetest.NewMemAnchor(testAuthKey)
	if err := Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ { // readers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rec, ok, err := s.Get(id(i % writers))
				if err != nil || (ok && len(rec) != 8) {
					t.Errorf("reader: %q %v %v", rec, ok, err)
					return
				}
			}
		}()
	}
	var seqMu sync.Mutex
	seqs := map[uint64]int{}
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			var last uint64
			for i := 0; i < iters; i++ {
				rec, ok, err := s.Get(id(w))
				if err != nil {
					t.Error(err)
					return
				}
				var n uint64
				if ok {
					n = binary.BigEndian.Uint64(rec)
				}
				if n != uint64(i) {
					t.Errorf("writer %d: counter %d, want %d", w, n, i)
					return
				}
				s.Put(id(w), binary.BigEndian.AppendUint64(nil, n+1))
				seq, err := s.Commit(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if seq <= last {
					t.Errorf("writer %d: sequence %d after %d", w, seq, last)
				}
				last = seq
				seqMu.Lock()
				seqs[seq]++
				seqMu.Unlock()
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	st := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	total := writers * iters
	if int(st.ChangesCommitted) != total {
		t.Fatalf("%d changes committed, want %d", st.ChangesCommitted, total)
	}
	if int(st.Commits) >= total {
		t.Fatalf("%d commits for %d Put+Commit calls: no grouping", st.Commits, total)
	}
	t.Logf("%d Put+Commit calls from %d writers in %d commits (largest group %d)", total, writers, st.Commits, maxVal(seqs))

	// Durable: after a power cut that keeps nothing unflushed, every
	// counter is at its final value.
	dev.PowerOff()
	dev.CrashKeep(nil)
	s2, err := Open(dev, storage.NewRPMBAnchor(rp, testAuthKey, 0), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for w := 0; w < writers; w++ {
		rec, ok, err := s2.Get(id(w))
		if err != nil || !ok || binary.BigEndian.Uint64(rec) != uint64(iters) {
			t.Fatalf("writer %d after reopen: %x %v %v", w, rec, ok, err)
		}
	}
}

func maxVal(m map[uint64]int) int {
	best := 0
	for _, v := range m {
		best = max(best, v)
	}
	return best
}

// TestConcurrentCloseAndCommit checks that Close with commits in flight
// neither hangs nor loses what it acknowledged.
func TestConcurrentCloseAndCommit(t *testing.T) {
	s, dev, anc, _ := newMemStore(t, 1<<13, testOpts(0))
	var wg sync.WaitGroup
	acked := make([]bool, 40)
	for i := range acked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(id(i), []byte(fmt.Sprint(i))); err != nil {
				return
			}
			if _, err := s.Commit(context.Background()); err == nil {
				acked[i] = true
			}
		}()
	}
	time.Sleep(time.Millisecond)
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung")
	}
	wg.Wait()
	s2, err := Open(dev, anc, testOpts(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i, ok := range acked {
		if _, found, _ := s2.Get(id(i)); ok && !found {
			t.Fatalf("acknowledged record %d lost", i)
		}
	}
}
