package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestRecordCapacityPredictsFull fills a small store until it is full and
// holds each estimate made on the way to the number of records it really
// took. The estimate is what cofferd places new users by: one far above
// the truth sends users to a device that then fails their registration,
// one far below leaves devices idle.
func TestRecordCapacityPredictsFull(t *testing.T) {
	const sectors = 1 << 14 // 2048 groups, 8 MiB
	s, _, _, _ := newMemStore(t, sectors, testOpts(0))
	defer s.Close()
	type guess struct{ records, capacity uint64 }
	var guesses []guess
	rec := make([]byte, MaxRecordSize)
	const batch = 8
	n := 0
	for {
		st := s.Stats()
		if st.RecordCapacity < st.Records {
			t.Fatalf("capacity %d below the %d records held", st.RecordCapacity, st.Records)
		}
		guesses = append(guesses, guess{st.Records, st.RecordCapacity})
		for i := range batch {
			if err := s.Put(id(n+i), rec); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Commit(context.Background()); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatalf("after %d records: %v, want ErrFull", n, err)
			}
			break
		}
		n += batch
	}
	full := uint64(n)
	t.Logf("full at %d records; estimate when empty %d, at a quarter %d, at half %d",
		full, guesses[0].capacity, guesses[len(guesses)/4].capacity, guesses[len(guesses)/2].capacity)
	for _, g := range guesses {
		// From the first calibration on, within 10 % of the truth;
		// before it, from the format's figure, within 25 %.
		tolerance := 0.10
		if g.records < calibrationRecords {
			tolerance = 0.25
		}
		if off := float64(g.capacity)/float64(full) - 1; off > tolerance || off < -tolerance {
			t.Fatalf("at %d records the estimate was %d, the store took %d (%+.0f %%)", g.records, g.capacity, full, 100*off)
		}
	}
	// Full: nothing more is promised than what is held.
	if st := s.Stats(); st.RecordCapacity > st.Records+st.Records/10 {
		t.Fatalf("a full store of %d records estimates %d", st.Records, st.RecordCapacity)
	}
}

// TestEstimateCapacityArithmetic checks the estimate's edges: a store
// whose free space is within its reserve holds no more than it has, and the
// largest store the format allows does not overflow.
func TestEstimateCapacityArithmetic(t *testing.T) {
	if got := estimateCapacity(500, 64*1024, 1024); got != 500 {
		t.Fatalf("free space inside the reserve: %d, want 500", got)
	}
	const maxSectors = maxGroups * nodeSectors
	got := estimateCapacity(maxSectors/4, maxSectors, maxSectors/2)
	if got <= maxSectors/4 || got > maxSectors {
		t.Fatalf("largest store, half free: %d of %d sectors", got, maxSectors)
	}
	if got := estimateCapacity(0, maxSectors, maxSectors); got == 0 || got > maxSectors {
		t.Fatalf("largest store, empty: %d", got)
	}
}

// TestRecordCapacityAfterChurn: a store that has lived (records rewritten
// at every login, some deleted, new ones added) still fills where its
// estimate said, within 10 %: free sectors scattered among record slots by
// the churn must not make the estimate promise room the allocator cannot
// give (FORMAT.md, "Space reclamation").
func TestRecordCapacityAfterChurn(t *testing.T) {
	const sectors = 1 << 14
	s, _, _, _ := newMemStore(t, sectors, testOpts(0))
	defer s.Close()
	rec := make([]byte, MaxRecordSize)
	ctx := context.Background()
	put := func(i int) {
		if err := s.Put(id(i), rec); err != nil {
			t.Fatal(err)
		}
	}
	// Two thirds full, then churn: rewrites, a quarter deleted, as many
	// new ones.
	target := int(s.Stats().RecordCapacity * 2 / 3)
	for i := range target {
		put(i)
		if i%64 == 63 {
			commit(t, s)
		}
	}
	commit(t, s)
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 40 {
		for range 32 {
			put(r.IntN(target))
		}
		for k := range 16 {
			if n := round*16 + k; n%4 == 0 && n < target {
				s.Delete(id(n))
			}
		}
		commit(t, s)
	}
	next := target
	var estimates []uint64
	for {
		estimates = append(estimates, s.Stats().RecordCapacity)
		for range 8 {
			put(next)
			next++
		}
		if _, err := s.Commit(ctx); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	full := s.Stats().Records
	t.Logf("after churn: full at %d records; estimates on the way from %d to %d", full, estimates[0], estimates[len(estimates)-1])
	for _, e := range estimates {
		if off := float64(e)/float64(full) - 1; off > 0.10 || off < -0.10 {
			t.Fatalf("an estimate of %d for a store that filled at %d (%+.0f %%)", e, full, 100*off)
		}
	}
}
