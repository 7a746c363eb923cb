// Package memstore is a vault record store in RAM, for tests: the contract
// of applet/store (group commit, staged changes visible at once, failed
// commits kept) without its cryptography, so that vault tests run fast, plus
// what tests need and a real store must not offer: power cuts, a flush
// latency, injected commit failures and snapshots to roll back to.
package memstore

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"
)

// Store is a vault.Store in RAM with group commit, an optional flush
// latency and fault injection. It keeps committed and staged state apart so
// that tests can cut the power (Crash) and see exactly what a reboot would.
// It authenticates nothing: the store's own tests prove that part.
//
// It behaves as the record store (applet/store) does: a change is visible
// to Get from the moment it is staged, including while the commit carrying
// it is in flight; a failed commit keeps its changes staged; a Commit whose
// context ends stops waiting but does not cancel the commit.
type Store struct {
	// FlushLatency is slept inside every commit, as a device flush would.
	FlushLatency time.Duration
	// FailCommit, if set, is consulted by every commit; an error fails the
	// commit and leaves what was staged staged.
	FailCommit func() error

	mu        sync.Mutex
	committed map[string][]byte
	seq       uint64
	commits   int
	shreds    int

	pending  *batch // staged since the last commit began
	inflight *batch // being committed, or nil
}

// batch is one group commit: everything staged between two commits. Its
// done channel is closed when it is durable (or failed), which wakes all of
// its waiters at once.
type batch struct {
	changes map[string][]byte // a nil value stages a delete
	shred   bool
	wanted  bool // a Commit waits for it
	done    chan struct{}
	seq     uint64
	err     error
}

func newBatch() *batch { return &batch{changes: map[string][]byte{}, done: make(chan struct{})} }

func (b *batch) empty() bool { return len(b.changes) == 0 && !b.shred }

// New returns an empty store.
func New() *Store {
	return &Store{committed: map[string][]byte{}, pending: newBatch()}
}

// Get returns what was staged last for id, whether its commit has not begun
// or is in flight, or else the committed record.
func (s *Store) Get(id []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range []*batch{s.pending, s.inflight} {
		if b == nil {
			continue
		}
		if v, ok := b.changes[string(id)]; ok {
			return append([]byte(nil), v...), v != nil, nil
		}
	}
	v, ok := s.committed[string(id)]
	return append([]byte(nil), v...), ok, nil
}

func (s *Store) Put(id, rec []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending.changes[string(id)] = append([]byte{}, rec...)
	return nil
}

func (s *Store) Delete(id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending.changes[string(id)] = nil
	return nil
}

func (s *Store) Shred() {
	s.mu.Lock()
	s.pending.shred = true
	s.mu.Unlock()
}

// Commit waits until everything staged before the call is durable: the
// batch it staged into, or with nothing staged, the commit in flight (which
// may hold changes staged earlier). If ctx ends first it returns ctx's
// error and the commit goes on.
func (s *Store) Commit(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	b := s.pending
	if b.empty() {
		if s.inflight == nil {
			seq := s.seq
			s.mu.Unlock()
			return seq, nil
		}
		b = s.inflight
	} else {
		b.wanted = true
		if s.inflight == nil {
			s.startCommit()
		}
	}
	s.mu.Unlock()
	select {
	case <-b.done:
		return b.seq, b.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// startCommit makes the pending batch the one in flight and commits it in
// the background, as the record store's committer does. Called with s.mu
// held and no commit in flight.
func (s *Store) startCommit() {
	b := s.pending
	s.pending, s.inflight = newBatch(), b
	go s.commit(b)
}

func (s *Store) commit(b *batch) {
	var err error
	if s.FailCommit != nil {
		err = s.FailCommit()
	}
	if err == nil && s.FlushLatency > 0 {
		time.Sleep(s.FlushLatency)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight = nil
	if err != nil {
		// Not durable: keep the changes staged, under any newer ones.
		for k, v := range b.changes {
			if _, ok := s.pending.changes[k]; !ok {
				s.pending.changes[k] = v
			}
		}
		s.pending.shred = s.pending.shred || b.shred
	} else {
		for k, v := range b.changes {
			if v == nil {
				delete(s.committed, k)
			} else {
				s.committed[k] = v
			}
		}
		s.seq++
		s.commits++
		if b.shred {
			s.shreds++
		}
		b.seq = s.seq
	}
	b.err = err
	close(b.done)
	if s.pending.wanted {
		s.startCommit()
	}
}

// dropPending forgets what is staged; anyone waiting for it is told it was
// lost. Called with s.mu held.
func (s *Store) dropPending(err error) {
	if s.pending.wanted {
		s.pending.err = err
		close(s.pending.done)
	}
	s.pending = newBatch()
}

// Crash forgets everything staged and not committed, as a power cut would.
func (s *Store) Crash() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropPending(ErrPowerCut)
}

// Committed returns the committed value of id, ignoring staged changes.
func (s *Store) Committed(id []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.committed[string(id)]
	return append([]byte(nil), v...), ok
}

// Stats reports how many commits, and commits with a shred, succeeded.
func (s *Store) Stats() (commits, shreds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits, s.shreds
}

// ErrPowerCut is what FailCommit hooks return to simulate a cut.
var ErrPowerCut = errors.New("memstore: simulated power cut")

// errRestored fails the commits waiting for changes a Snapshot restore
// dropped.
var errRestored = errors.New("memstore: store restored from a snapshot")

// Snapshot copies the committed state. The returned function puts it back,
// dropping anything staged, as an operator restoring an old copy of a store
// that nothing authenticates would: tests use it to check that clients
// notice the rollback through the store sequences in receipts.
func (s *Store) Snapshot() (restore func()) {
	s.mu.Lock()
	committed, seq := maps.Clone(s.committed), s.seq
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.committed, s.seq = maps.Clone(committed), seq
		s.dropPending(errRestored)
	}
}
