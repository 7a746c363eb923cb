package store

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
)

func TestPutGetDeleteSemantics(t *testing.T) {
	s, _, _, _ := newMemStore(t, 4096, testOpts(0))
	a, b := []byte("alice"), []byte("bob")

	if _, ok, err := s.Get(a); ok || err != nil {
		t.Fatalf("Get on empty store: %v %v", ok, err)
	}
	if err := s.Put(a, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	// Staged changes are visible at once.
	if rec, ok, _ := s.Get(a); !ok || string(rec) != "v1" {
		t.Fatalf("staged Get = %q %v", rec, ok)
	}
	seq1 := commit(t, s)
	if rec, ok, _ := s.Get(a); !ok || string(rec) != "v1" {
		t.Fatalf("committed Get = %q %v", rec, ok)
	}
	// An empty record is a record, not a deletion.
	s.Put(b, nil)
	seq2 := commit(t, s)
	if seq2 <= seq1 {
		t.Fatalf("sequence went from %d to %d", seq1, seq2)
	}
	if rec, ok, err := s.Get(b); !ok || len(rec) != 0 || err != nil {
		t.Fatalf("empty record: %q %v %v", rec, ok, err)
	}
	// Get returns a copy.
	rec, _, _ := s.Get(a)
	rec[0] = 'X'
	if rec2, _, _ := s.Get(a); string(rec2) != "v1" {
		t.Fatal("Get returned shared memory")
	}
	// Put copies its argument.
	buf := []byte("v2")
	s.Put(a, buf)
	buf[0] = 'X'
	if rec, _, _ := s.Get(a); string(rec) != "v2" {
		t.Fatalf("Put kept the caller's buffer: %q", rec)
	}
	s.Delete(a)
	if _, ok, _ := s.Get(a); ok {
		t.Fatal("staged delete still visible")
	}
	commit(t, s)
	if _, ok, _ := s.Get(a); ok {
		t.Fatal("committed delete still visible")
	}
	// Commit with nothing staged returns the current sequence without an
	// anchor write.
	before := s.Stats()
	seq := commit(t, s)
	after := s.Stats()
	if seq != before.Seq || after.AnchorWrites != before.AnchorWrites {
		t.Fatalf("empty commit: seq %d (want %d), anchor writes %d -> %d", seq, before.Seq, before.AnchorWrites, after.AnchorWrites)
	}
	// A full-size record round-trips.
	big := bytes.Repeat([]byte{0xa5}, MaxRecordSize)
	s.Put(a, big)
	commit(t, s)
	if rec, _, _ := s.Get(a); !bytes.Equal(rec, big) {
		t.Fatal("max-size record corrupted")
	}
}

func TestBadInput(t *testing.T) {
	s, _, _, _ := newMemStore(t, 4096, testOpts(0))
	cases := []func() error{
		func() error { return s.Put(nil, []byte("x")) },
		func() error { return s.Put(make([]byte, MaxIDSize+1), nil) },
		func() error { return s.Put([]byte("a"), make([]byte, MaxRecordSize+1)) },
		func() error { return s.Delete(nil) },
		func() error { _, _, err := s.Get(nil); return err },
	}
	for i, f := range cases {
		if err := f(); !errors.Is(err, ErrBadInput) {
			t.Errorf("case %d: %v, want ErrBadInput", i, err)
		}
	}
	if err := s.Put(make([]byte, MaxIDSize), make([]byte, MaxRecordSize)); err != nil {
		t.Fatal(err)
	}
}

// TestRandomOpsAgainstModel drives many random changes through small nodes
// (deep trees, splits and merges), checking the store against a map after
// every commit and after reopening.
func TestRandomOpsAgainstModel(t *testing.T) {
	for _, cfg := range []struct{ fanout, users, rounds, cache int }{
		{3, 400, 80, 3}, // a cache far smaller than the tree: constant eviction
		{4, 12, 300, 0},
		{7, 400, 80, -1}, // no cache
		{0, 400, 40, 0},
	} {
		fanout := cfg.fanout
		opts := testOpts(fanout)
		opts.CacheNodes = cfg.cache
		if testing.Short() {
			cfg.users, cfg.rounds = min(cfg.users, 120), cfg.rounds/3
		}
		s, dev, anc, _ := newMemStore(t, 1<<15, opts)
		r := rand.New(rand.NewPCG(uint64(fanout), 1))
		m := model{}
		var universe []string
		for i := 0; i < cfg.users; i++ {
			universe = append(universe, string(id(i)))
		}
		rounds := cfg.rounds
		maxHeight := 0
		for round := 0; round < rounds; round++ {
			changes := map[string]*string{}
			n, delOnly := r.IntN(min(60, cfg.users)), r.IntN(3) == 0
			if delOnly { // a few deletes of present ids: collapses and merges on their own
				n = r.IntN(4)
				for k := range m {
					if n--; n < 0 {
						break
					}
					s.Delete([]byte(k))
					changes[k] = nil
				}
			}
			for j := n; j >= 0 && !delOnly; j-- {
				k := universe[r.IntN(len(universe))]
				if r.IntN(3) == 0 {
					s.Delete([]byte(k))
					changes[k] = nil
				} else {
					v := string(bytes.Repeat([]byte{byte(r.Uint32())}, r.IntN(MaxRecordSize+1)))
					s.Put([]byte(k), []byte(v))
					changes[k] = &v
				}
			}
			if round%10 == 9 { // mass deletion: merges down to an empty tree
				for _, k := range universe {
					if r.IntN(10) != 0 {
						s.Delete([]byte(k))
						changes[k] = nil
					}
				}
			}
			commit(t, s)
			m = m.apply(changes)
			if err := m.check(s, universe); err != nil {
				t.Fatalf("fanout %d round %d: %v", fanout, round, err)
			}
			maxHeight = max(maxHeight, s.Stats().Height)
			// The allocator holds exactly what the tree reaches: nothing
			// leaks, nothing live is free.
			if testing.Short() && round%4 != 3 {
				continue
			}
			st := s.Stats()
			if used, live := st.TotalSectors-st.FreeSectors, uint64(len(liveSectors(t, s))+nodeSectors-1); used != live {
				t.Fatalf("fanout %d round %d: %d sectors in use, the tree reaches %d", fanout, round, used, live)
			}
		}
		s.Close()
		s2, err := Open(dev, anc, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.check(s2, universe); err != nil {
			t.Fatalf("fanout %d after reopen: %v", fanout, err)
		}
		s2.Close()
		if fanout != 0 && cfg.users > 100 && maxHeight < 3 && !testing.Short() {
			t.Errorf("fanout %d: tree height reached only %d", fanout, maxHeight)
		}
		t.Logf("fanout %d: max height %d", fanout, maxHeight)
	}
}

func TestFormatAndOpenLifecycle(t *testing.T) {
	opts := testOpts(0)
	dev := storetest.NewMemDevice(4096)
	anc, rp := storetest.NewMemAnchor(testAuthKey)

	if _, err := Open(dev, anc, opts); !errors.Is(err, ErrNotFormatted) {
		t.Fatalf("Open on a fresh device: %v", err)
	}
	if err := Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	if err := Format(dev, anc, opts); !errors.Is(err, ErrExists) {
		t.Fatalf("second Format: %v, want ErrExists", err)
	}
	s, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Put([]byte("a"), []byte("1"))
	seq := commit(t, s)
	s.Close()

	// Every Open moves the sequence forward.
	s, err = Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Seq; got <= seq {
		t.Fatalf("sequence after reopen %d, want > %d", got, seq)
	}
	seq = s.Stats().Seq
	s.Close()

	// A wiped device whose anchor says a store exists is refused, not
	// reformatted.
	wiped := storetest.NewMemDevice(4096)
	if _, err := Open(wiped, anc, opts); !isTampered(err) {
		t.Fatalf("Open on a wiped device: %v, want storage.ErrTampered", err)
	}
	if err := Format(wiped, anc, opts); !errors.Is(err, ErrExists) {
		t.Fatalf("Format over an anchored store: %v", err)
	}
	// An explicit reformat destroys it and continues the sequence.
	ro := opts
	ro.Reformat = true
	if err := Format(wiped, anc, ro); err != nil {
		t.Fatal(err)
	}
	s, err = Open(wiped, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Stats(); got.Seq <= seq || got.Records != 0 {
		t.Fatalf("after reformat: seq %d (want > %d), %d records", got.Seq, seq, got.Records)
	}
	s.Close()
	// The old device is now a foreign store.
	if _, err := Open(dev, anc, opts); !isTampered(err) {
		t.Fatalf("Open of the replaced store: %v", err)
	}
	// A different sealing key cannot open the anchor.
	bad := opts
	bad.SealingKey[0] ^= 1
	if _, err := Open(wiped, anc, bad); !isTampered(err) {
		t.Fatalf("Open with another sealing key: %v", err)
	}
	// Sequence numbers track the RPMB write counter from below.
	if s.Stats().WriteCounter != rp.Counter() {
		t.Fatalf("stats counter %d, device %d", s.Stats().WriteCounter, rp.Counter())
	}
}

func TestCloseCommitsAndRefuses(t *testing.T) {
	opts := testOpts(0)
	s, dev, anc, _ := newMemStore(t, 4096, opts)
	s.Put([]byte("a"), []byte("1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put([]byte("b"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if _, err := s.Commit(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	s2, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rec, ok, _ := s2.Get([]byte("a")); !ok || string(rec) != "1" {
		t.Fatal("Close did not commit staged changes")
	}
}

// TestMinAnchorInterval checks that anchor writes are spaced and that what
// arrives meanwhile is batched into one commit.
func TestMinAnchorInterval(t *testing.T) {
	opts := testOpts(0)
	opts.MinAnchorInterval = 40 * time.Millisecond
	s, _, _, _ := newMemStore(t, 1<<14, opts)
	start := s.Stats().AnchorWrites
	const writers, each = 20, 5
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s.Put(id(w*100+i), []byte("x"))
				if _, err := s.Commit(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	writes := s.Stats().AnchorWrites - start
	// Each writer's 5 commits are sequential, so at least 5 anchor writes;
	// at most one per interval plus one.
	limit := uint64(elapsed/opts.MinAnchorInterval) + 1
	if writes < each || writes > limit {
		t.Fatalf("%d anchor writes in %v (interval %v): want between %d and %d", writes, elapsed, opts.MinAnchorInterval, each, limit)
	}
	if got := s.Stats().ChangesCommitted; got != writers*each {
		t.Fatalf("%d changes committed, want %d", got, writers*each)
	}
	t.Logf("%d commits of %d changes in %v", writes, writers*each, elapsed)
}

func TestCommitContextCancel(t *testing.T) {
	opts := testOpts(0)
	opts.MinAnchorInterval = 200 * time.Millisecond
	s, _, _, _ := newMemStore(t, 4096, opts)
	s.Put([]byte("a"), []byte("1"))
	commit(t, s) // the anchor was just written: the next must wait
	s.Put([]byte("a"), []byte("2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Commit(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit: %v, want deadline exceeded", err)
	}
	// Still staged, and committed by the next Commit.
	seq := commit(t, s)
	if rec, _, _ := s.Get([]byte("a")); string(rec) != "2" || seq == 0 {
		t.Fatalf("after cancel: %q", rec)
	}
}

func TestShredAdvancesEpoch(t *testing.T) {
	s, _, _, _ := newMemStore(t, 4096, testOpts(0))
	e0 := s.Stats()
	s.Shred()
	seq := commit(t, s)
	e1 := s.Stats()
	if e1.Epoch != e0.Epoch+1 || seq <= e0.Seq || e1.AnchorWrites != e0.AnchorWrites+1 {
		t.Fatalf("Shred with nothing staged: epoch %d->%d, seq %d->%d, writes %d->%d",
			e0.Epoch, e1.Epoch, e0.Seq, seq, e0.AnchorWrites, e1.AnchorWrites)
	}
}

func TestDeviceFull(t *testing.T) {
	opts := testOpts(0)
	s, dev, anc, _ := newMemStore(t, 8*minGroups+64, opts) // ~ 8 free groups
	var n int
	for n = 0; n < 1000; n++ {
		s.Put(id(n), []byte("r"))
		if _, err := s.Commit(context.Background()); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatalf("commit %d: %v, want ErrFull", n, err)
			}
			break
		}
	}
	if n == 1000 {
		t.Fatal("device never filled")
	}
	// The failed change is still staged and the store still serves and
	// accepts a commit that frees space.
	if _, ok, err := s.Get(id(n)); !ok || err != nil {
		t.Fatalf("staged change lost after ErrFull: %v %v", ok, err)
	}
	s.Delete(id(n))
	for i := 0; i < n/2; i++ {
		s.Delete(id(i))
	}
	commit(t, s)
	s.Close()
	s2, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.Stats().Records; got != uint64(n-n/2) {
		t.Fatalf("%d records after reopen, want %d", got, n-n/2)
	}
}

// TestSpaceReclaimed runs a steady login load (every login rewrites a
// record) and checks that the space in use stays bounded.
func TestSpaceReclaimed(t *testing.T) {
	s, _, _, _ := newMemStore(t, 1<<13, testOpts(0))
	const users = 300
	for i := 0; i < users; i++ {
		s.Put(id(i), bytes.Repeat([]byte{1}, 200))
	}
	commit(t, s)
	base := s.Stats()
	r := rand.New(rand.NewPCG(3, 4))
	logins := 5000
	if testing.Short() {
		logins = 1500
	}
	for i := 0; i < logins; i++ {
		s.Put(id(r.IntN(users)), bytes.Repeat([]byte{byte(i)}, 200))
		commit(t, s)
	}
	end := s.Stats()
	usedBase := base.TotalSectors - base.FreeSectors
	usedEnd := end.TotalSectors - end.FreeSectors
	t.Logf("%d logins: %d sectors in use before, %d after, %d bytes written", logins, usedBase, usedEnd, end.BytesWritten)
	// Bytes written exceed the device several times over, so space must have
	// been reused; what is in use can grow only by node fill, not with logins.
	if end.BytesWritten < 2*end.TotalSectors*storage.SectorSize {
		t.Fatalf("test too short: wrote %d bytes on a %d-byte device", end.BytesWritten, end.TotalSectors*storage.SectorSize)
	}
	if usedEnd > usedBase+16 {
		t.Fatalf("space in use grew from %d to %d sectors", usedBase, usedEnd)
	}
}

// TestRootCollapsesToUntouchedChild: deleting every record of one child of
// a two-child root leaves the other child, unmodified, as the new root. The
// commit must still happen.
func TestRootCollapsesToUntouchedChild(t *testing.T) {
	opts := testOpts(4)
	s, dev, anc, _ := newMemStore(t, 4096, opts)
	for i := 0; i < 5; i++ { // 5 > 4: the root leaf splits into two leaves
		s.Put(id(i), []byte("x"))
	}
	commit(t, s)
	if h := s.Stats().Height; h != 2 {
		t.Fatalf("height %d, want 2", h)
	}
	// Find the records under the root's second child.
	s.treeMu.RLock()
	second, err := s.loadNode(&s.root.ents[1].ref, 0)
	s.treeMu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	var gone []int
	for i := 0; i < 5; i++ {
		k := s.hashID(id(i))
		if _, ok := second.search(&k); ok {
			gone = append(gone, i)
			s.Delete(id(i))
		}
	}
	seq0 := s.Stats().Seq
	if seq := commit(t, s); seq <= seq0 {
		t.Fatalf("the deletion was not committed (sequence %d, was %d)", seq, seq0)
	}
	check := func(s *Store, when string) {
		for _, i := range gone {
			if _, ok, err := s.Get(id(i)); ok || err != nil {
				t.Fatalf("%s: deleted record %d: %v %v", when, i, ok, err)
			}
		}
		if got := s.Stats().Records; got != uint64(5-len(gone)) || s.Stats().Height != 1 {
			t.Fatalf("%s: %d records, height %d", when, got, s.Stats().Height)
		}
	}
	check(s, "after commit")
	s.Close()
	s2, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	check(s2, "after reopen")
}
