package store

// This file is the store's API: its options, errors and counters, and the
// calls the vault makes (Get, Put, Delete, Shred, Commit, Close, Stats).
// Creating and recovering a store is in open.go, the committer in commit.go.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/internal/storage"
)

// Options configure Open and Format.
type Options struct {
	// SealingKey is the device-unique key the OS derives for the store. It
	// seals the anchor (and the root key in it) and authenticates the
	// superblock.
	SealingKey [32]byte

	// MinAnchorInterval is the least time between two anchor writes. On
	// hardware the RPMB write counter is 32 bits and wears out: use 100 ms.
	// Changes that arrive meanwhile join the next commit. 0 is allowed
	// (software vault, tests).
	MinAnchorInterval time.Duration

	// CacheNodes bounds the number of verified internal nodes kept in RAM
	// (about 6 KiB each). 0 means DefaultCacheNodes, negative means none.
	// With all internal nodes cached, a Get reads two blocks (leaf and
	// record) whatever the size of the store.
	CacheNodes int

	// Reformat lets Format destroy a store that the anchor says exists.
	Reformat bool

	maxEntries int // node capacity override for tests
}

// DefaultCacheNodes holds every internal node of a store of about 1.5
// million records, in at most about 23 MB.
const DefaultCacheNodes = 4096

var (
	// ErrNotFormatted is returned by Open when the anchor has never been
	// written: there is no store yet, and Format must be called. A device
	// whose anchor says a store exists is never reformatted implicitly.
	ErrNotFormatted = errors.New("store: not formatted")
	// ErrExists is returned by Format when the anchor already holds a store
	// and Options.Reformat is not set.
	ErrExists = errors.New("store: anchor already holds a store (set Reformat to destroy it)")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
	// ErrFailed wraps the cause when an anchor write failed with an unknown
	// outcome: the in-memory state may no longer match the device, so the
	// Store refuses everything and must be reopened to recover.
	ErrFailed = errors.New("store: failed, reopen to recover")
	// ErrBadInput reports an empty or oversized id or an oversized record.
	ErrBadInput = errors.New("store: invalid input")
)

// Stats are counters for metrics.
type Stats struct {
	Seq          uint64 // last committed sequence
	Epoch        uint64 // commits that carried a Shred
	WriteCounter uint32 // RPMB write counter after the last anchor write
	Records      uint64 // committed records
	Height       int    // tree height (1: the root is a leaf)

	AnchorWrites     uint64 // by this Store, including the one at Open
	Commits          uint64 // commits that wrote a new tree
	ChangesCommitted uint64 // staged changes made durable
	BytesWritten     uint64 // to the block device, by commits
	Flushes          uint64

	TotalSectors uint64
	FreeSectors  uint64
	CachedNodes  int

	// RecordCapacity estimates how many records the store holds when full
	// (estimateCapacity): what a vault's signed status reports, and what
	// cofferd places new users by.
	RecordCapacity uint64
}

// Store is a tamper-evident, crash-safe record store: one sealed record per
// user id in a Merkle-authenticated copy-on-write tree, anchored after every
// commit in a monotonic anchor. It implements the vault's Store interface.
// All methods are safe for concurrent use.
type Store struct {
	dev     storage.Device
	anc     storage.Anchor
	opts    Options
	keys    deviceKeys
	idKey   [32]byte
	idMACs  sync.Pool // of HMAC(idKey) states
	storeID [16]byte
	groups  uint64
	max     int

	cache *nodeCache

	// treeMu guards the committed tree: readers hold it while they walk
	// it, the committer takes it to publish a new root, after which the
	// old tree's sectors may be reused.
	treeMu sync.RWMutex
	root   *node
	st     anchorState

	mu       sync.Mutex // guards everything below
	pending  *batch     // changes staged since the last commit started
	inflight *batch     // changes being committed
	failed   error
	closed   bool
	stats    Stats

	kick    chan struct{}
	closing chan struct{}
	done    chan struct{}

	// owned by the committer goroutine
	alloc      *allocator
	counter    uint32
	lastAnchor time.Time
}

func (s *Store) hashID(id []byte) [32]byte {
	m, _ := s.idMACs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, s.idKey[:])
	}
	m.Write(id)
	var k [32]byte
	m.Sum(k[:0])
	m.Reset()
	s.idMACs.Put(m)
	return k
}

func checkID(id []byte) error {
	if len(id) == 0 || len(id) > MaxIDSize {
		return fmt.Errorf("%w: id of %d bytes", ErrBadInput, len(id))
	}
	return nil
}

func (s *Store) usable() error {
	if s.failed != nil {
		return s.failed
	}
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Get returns the record for id: staged, or committed and verified along
// its whole path to the anchored root. Verification failures wrap
// ErrTampered and return no data.
func (s *Store) Get(id []byte) ([]byte, bool, error) {
	if err := checkID(id); err != nil {
		return nil, false, err
	}
	k := s.hashID(id)
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return nil, false, err
	}
	for _, b := range []*batch{s.pending, s.inflight} {
		if b == nil {
			continue
		}
		if c, ok := b.changes[k]; ok {
			s.mu.Unlock()
			if c.del {
				return nil, false, nil
			}
			return bytes.Clone(c.rec), true, nil
		}
	}
	s.mu.Unlock()
	s.treeMu.RLock()
	defer s.treeMu.RUnlock()
	return s.lookup(s.root, &k)
}

// Put stages rec as the record for id.
func (s *Store) Put(id, rec []byte) error {
	if err := checkID(id); err != nil {
		return err
	}
	if len(rec) > MaxRecordSize {
		return fmt.Errorf("%w: record of %d bytes (max %d)", ErrBadInput, len(rec), MaxRecordSize)
	}
	return s.stage(id, &change{rec: bytes.Clone(rec)})
}

// Delete stages the removal of id.
func (s *Store) Delete(id []byte) error {
	if err := checkID(id); err != nil {
		return err
	}
	return s.stage(id, &change{del: true})
}

func (s *Store) stage(id []byte, c *change) error {
	k := s.hashID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if old, ok := s.pending.changes[k]; ok {
		clear(old.rec)
	}
	s.pending.changes[k] = c
	return nil
}

// Shred makes the next commit a shredding one. Every commit already makes
// the previous copies of what it changes unreadable (their keys existed only
// in the superseded nodes, and the previous root key only in the anchor it
// overwrites), so Shred adds only this: the next Commit writes the anchor
// even if nothing else changed, and the erasure epoch advances.
func (s *Store) Shred() {
	s.mu.Lock()
	s.pending.shred = true
	s.mu.Unlock()
}

// Commit waits until every change staged before the call is durable and
// returns the sequence of the commit that made it so. With nothing staged it
// returns the current sequence at once. If ctx ends first, Commit returns its
// error; the changes stay staged and are committed with the next batch.
func (s *Store) Commit(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	b := s.pending
	if b.empty() {
		if s.inflight == nil {
			seq := s.stats.Seq
			s.mu.Unlock()
			return seq, nil
		}
		b = s.inflight
	} else {
		select {
		case s.kick <- struct{}{}:
		default:
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

// Close commits whatever is staged, stops the committer and returns the
// error of that last commit, if any. The device and anchor stay open.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	b := s.pending
	s.mu.Unlock()
	close(s.closing)
	<-s.done
	if b.empty() {
		return nil
	}
	<-b.done
	return b.err
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.CachedNodes = s.cache.len()
	return st
}
