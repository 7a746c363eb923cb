package vaulttest

import (
	"context"
	"errors"
	"maps"
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
	seq       uint64
	shred     bool
	commits   int
	shreds    int

	open     *batch // collects what is staged now
	inflight *batch // being committed, or nil
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{committed: map[string][]byte{}, staged: map[string][]byte{}}
	s.open = newBatch()
	return s
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
	s.open.changes++
	return nil
}

func (s *MemoryStore) Delete(id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged[string(id)] = nil
	s.open.changes++
	return nil
}

func (s *MemoryStore) Shred() {
	s.mu.Lock()
	s.shred = true
	s.mu.Unlock()
}

// batch is one group commit: everything staged between two commits. Its
// done channel is closed when it is durable (or failed), which wakes all of
// its waiters at once without any of them re-taking a lock.
type batch struct {
	done    chan struct{}
	changes int
	seq     uint64
	err     error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// Commit waits for the batch holding this caller's changes. The first caller
// to find no commit in flight becomes the committer and keeps committing
// batches until none is waiting.
func (s *MemoryStore) Commit(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	b := s.open
	if b.changes == 0 {
		// Nothing of ours is open: wait for the commit in flight, if any,
		// since it may hold changes we staged before calling.
		c := s.inflight
		seq := s.seq
		s.mu.Unlock()
		if c == nil {
			return seq, nil
		}
		<-c.done
		return c.seq, c.err
	}
	if s.inflight == nil {
		s.commitLoop(ctx)
	}
	s.mu.Unlock()
	<-b.done
	return b.seq, b.err
}

// commitLoop commits open batches one after another. Called and returns
// with s.mu held.
func (s *MemoryStore) commitLoop(ctx context.Context) {
	for s.open.changes > 0 {
		c := s.open
		s.open, s.inflight = newBatch(), c
		data, shred := s.staged, s.shred
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
		s.inflight = nil
		if err != nil {
			// Put the batch back under anything staged since, so that
			// nothing staged is silently lost from the RAM view; its
			// waiters fail, and a later commit will retry the changes.
			for k, v := range s.staged {
				data[k] = v
			}
			s.staged = data
			s.shred = s.shred || shred
			s.open.changes += c.changes
			c.err = err
			close(c.done)
			return
		}
		for k, v := range data {
			if v == nil {
				delete(s.committed, k)
			} else {
				s.committed[k] = v
			}
		}
		s.seq++
		s.commits++
		if shred {
			s.shreds++
		}
		c.seq = s.seq
		close(c.done)
	}
}

// Crash forgets everything staged and not committed, as a power cut would.
func (s *MemoryStore) Crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged = map[string][]byte{}
	s.open.changes = 0
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

// Snapshot copies the committed state. The returned function puts it back,
// dropping anything staged, as an operator restoring an old copy of a store
// that nothing authenticates would: tests use it to check that clients
// notice the rollback through the store sequences in receipts.
func (s *MemoryStore) Snapshot() (restore func()) {
	s.mu.Lock()
	committed, seq := maps.Clone(s.committed), s.seq
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.committed, s.seq = maps.Clone(committed), seq
		s.staged = map[string][]byte{}
		s.open.changes = 0
	}
}
