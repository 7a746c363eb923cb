package vaulttest

import (
	"context"
	"errors"
	"sync"
	"time"
)

// MemoryStore is a vault.Store in RAM with group commit, an optional flush
// latency and fault injection. It keeps committed and staged state apart so
// that tests can cut the power (Crash) and see exactly what a reboot would.
// It authenticates nothing: the store's own tests prove that part.
type MemoryStore struct {
	// FlushLatency is slept inside every commit, as a device flush would.
	FlushLatency time.Duration
	// FailCommit, if set, is consulted by every commit; an error fails the
	// commit and leaves what was staged unwritten.
	FailCommit func() error

	mu        sync.Mutex
	committed map[string][]byte
	staged    map[string][]byte // a nil value stages a delete
	stagedGen uint64            // bumped by every Put and Delete
	doneGen   uint64            // the stagedGen the last commit covered
	seq       uint64
	shred     bool
	commits   int
	shreds    int

	commitMu sync.Mutex // one commit at a time; waiters form the next batch
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{committed: map[string][]byte{}, staged: map[string][]byte{}}
}

func (s *MemoryStore) Get(id []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.staged[string(id)]; ok {
		return append([]byte(nil), v...), v != nil, nil
	}
	v, ok := s.committed[string(id)]
	return append([]byte(nil), v...), ok, nil
}

func (s *MemoryStore) Put(id, rec []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged[string(id)] = append([]byte{}, rec...)
	s.stagedGen++
	return nil
}

func (s *MemoryStore) Delete(id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged[string(id)] = nil
	s.stagedGen++
	return nil
}

func (s *MemoryStore) Shred() {
	s.mu.Lock()
	s.shred = true
	s.mu.Unlock()
}

func (s *MemoryStore) Commit(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	target := s.stagedGen
	s.mu.Unlock()

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if s.doneGen >= target {
		seq := s.seq
		s.mu.Unlock()
		return seq, nil
	}
	batch, gen, shred := s.staged, s.stagedGen, s.shred
	s.staged, s.shred = map[string][]byte{}, false
	s.mu.Unlock()

	var err error
	if s.FailCommit != nil {
		err = s.FailCommit()
	}
	if err == nil && s.FlushLatency > 0 {
		time.Sleep(s.FlushLatency)
	}
	if err == nil {
		err = ctx.Err()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Put the batch back under anything staged since, so that
		// nothing staged is silently lost from the RAM view.
		for k, v := range s.staged {
			batch[k] = v
		}
		s.staged = batch
		s.shred = s.shred || shred
		return 0, err
	}
	for k, v := range batch {
		if v == nil {
			delete(s.committed, k)
		} else {
			s.committed[k] = v
		}
	}
	s.seq++
	s.doneGen = gen
	s.commits++
	if shred {
		s.shreds++
	}
	return s.seq, nil
}

// Crash forgets everything staged and not committed, as a power cut would.
func (s *MemoryStore) Crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged = map[string][]byte{}
	s.doneGen = s.stagedGen
	s.shred = false
}

// Committed returns the committed value of id, ignoring staged changes.
func (s *MemoryStore) Committed(id []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.committed[string(id)]
	return append([]byte(nil), v...), ok
}

// Stats reports how many commits, and commits with a shred, succeeded.
func (s *MemoryStore) Stats() (commits, shreds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits, s.shreds
}

// ErrPowerCut is what FailCommit hooks return to simulate a cut.
var ErrPowerCut = errors.New("vaulttest: simulated power cut")
