package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/cofferhsm/coffer/internal/storage"
	"hash"
	"slices"
	"sync"
	"time"
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

type batch struct {
	changes map[[32]byte]*change
	shred   bool
	done    chan struct{}
	seq     uint64
	err     error
}

type change struct {
	rec []byte
	del bool
}

func newBatch() *batch {
	return &batch{changes: make(map[[32]byte]*change), done: make(chan struct{})}
}

func (b *batch) empty() bool { return len(b.changes) == 0 && !b.shred }

const (
	minGroups = 4 // superblock, root, and room to commit
	// maxGroups bounds the device a store uses (256 GiB) so that the
	// allocator's RAM (2 bytes a group) stays small and its slices fit a
	// 32-bit int. Format ignores the rest of a larger device.
	maxGroups = 1 << 26
)

// Format creates an empty store on dev and anchors it. It refuses (ErrExists)
// if the anchor already holds a store, unless opts.Reformat is set; then the
// old store becomes unreadable (its root key is overwritten in the anchor).
// The sequence continues above every sequence the anchor ever held.
func Format(dev storage.Device, anc storage.Anchor, opts Options) error {
	keys := deriveDeviceKeys(&opts.SealingKey)
	data, counter, err := anc.Read()
	if err != nil {
		return err
	}
	if !isZero(data[:]) && !opts.Reformat {
		return ErrExists
	}
	groups := min(dev.Sectors()/nodeSectors, maxGroups)
	if groups < minGroups {
		return fmt.Errorf("store: device of %d sectors is too small", dev.Sectors())
	}
	var sb superblock
	rand.Read(sb.storeID[:])
	sb.sectors = groups * nodeSectors
	if err := dev.WriteSectors(0, sb.encode(&keys)); err != nil {
		return err
	}
	b, root := sealNode(encodeNode(&node{}), &sb.storeID, nodeSectors)
	if err := dev.WriteSectors(nodeSectors, b); err != nil {
		return err
	}
	if err := dev.Flush(); err != nil {
		return err
	}
	// Each anchor write advances the counter by at least one and the
	// sequence by exactly one, and sequences start at counter+1, so
	// counter+1 exceeds every sequence anchored before.
	st := anchorState{storeID: sb.storeID, seq: uint64(counter) + 1, counter: counter, root: root}
	_, err = anc.Write(st.encode(&keys))
	return err
}

// Open opens the store on dev anchored in anc, recovering the last committed
// state: the one the anchor names. It verifies the whole tree (every node,
// not the records) and refuses service with an error wrapping ErrTampered if
// anything does not match. A never-written anchor gives ErrNotFormatted. On
// success it writes the anchor once (same state, next sequence), which
// invalidates any authenticated write frame left pending on the RPMB bus by
// the previous boot (CVE-2020-13799) and moves the sequence forward.
func Open(dev storage.Device, anc storage.Anchor, opts Options) (*Store, error) {
	s := &Store{
		dev:     dev,
		anc:     anc,
		opts:    opts,
		keys:    deriveDeviceKeys(&opts.SealingKey),
		max:     MaxEntries,
		kick:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		pending: newBatch(),
	}
	if opts.maxEntries >= 3 && opts.maxEntries < MaxEntries {
		s.max = opts.maxEntries
	}
	cn := opts.CacheNodes
	if cn == 0 {
		cn = DefaultCacheNodes
	}
	s.cache = newNodeCache(cn)

	data, counter, err := anc.Read()
	if err != nil {
		return nil, err
	}
	st, err := decodeAnchor(&data, &s.keys)
	if errors.Is(err, errEmptyAnchor) {
		return nil, ErrNotFormatted
	}
	if err != nil {
		return nil, err
	}
	if st.counter >= counter {
		return nil, tamperedf("anchor written at counter %d but the counter is %d", st.counter, counter)
	}
	sector := make([]byte, storage.SectorSize)
	if err := dev.ReadSectors(0, sector); err != nil {
		return nil, err
	}
	sb, err := decodeSuperblock(sector, &s.keys)
	if errors.Is(err, errNoSuperblock) {
		return nil, tamperedf("store missing: the anchor holds store sequence %d with %d records but the device has no superblock", st.seq, st.records)
	}
	if err != nil {
		return nil, err
	}
	if sb.storeID != st.storeID {
		return nil, tampered("the device holds another store than the one anchored")
	}
	if sb.sectors > dev.Sectors() || sb.sectors/nodeSectors < minGroups || sb.sectors/nodeSectors > maxGroups {
		return nil, tamperedf("superblock says %d sectors, device has %d", sb.sectors, dev.Sectors())
	}
	s.storeID = sb.storeID
	s.groups = sb.sectors / nodeSectors
	s.idKey = deriveIDKey(&opts.SealingKey, s.storeID)
	s.alloc = newAllocator(s.groups)
	s.alloc.used[0] = 0xff // superblock
	s.alloc.free -= nodeSectors

	root, err := s.loadNode(&st.root, st.level)
	if err != nil {
		return nil, err
	}
	if !root.leaf() && len(root.ents) < 2 {
		return nil, tampered("internal root with fewer than two children")
	}
	var records uint64
	if err := s.walk(root, nil, nil, &records); err != nil {
		return nil, err
	}
	if records != st.records {
		return nil, tamperedf("tree holds %d records, anchor says %d", records, st.records)
	}
	s.root, s.st, s.counter = root, st, counter

	// Re-anchor the same tree under the next sequence.
	if err := s.writeAnchor(s.st.seq+1, s.st.epoch, root, s.st.records); err != nil {
		return nil, err
	}
	s.updateStats()
	go s.run()
	return s, nil
}

// walk verifies the subtree at n (already verified itself), checks that its
// keys lie in [lo, hi), and claims its sectors in the allocator.
func (s *Store) walk(n *node, lo, hi *[32]byte, records *uint64) error {
	if !s.alloc.markNode(n.ref.loc) {
		return tamperedf("node location %d invalid or used twice", n.ref.loc)
	}
	for i := range n.ents {
		e := &n.ents[i]
		if (lo != nil && bytes.Compare(e.k[:], lo[:]) < 0) || (hi != nil && bytes.Compare(e.k[:], hi[:]) >= 0) {
			return tamperedf("node at sector %d: key out of its parent's range", n.ref.loc)
		}
		if n.leaf() {
			if e.ref.loc < nodeSectors || !s.alloc.markRecord(e.ref.loc) {
				return tamperedf("record location %d invalid or used twice", e.ref.loc)
			}
			*records++
			continue
		}
		c, err := s.loadNode(&e.ref, n.level-1)
		if err != nil {
			return err
		}
		if len(c.ents) == 0 {
			return tamperedf("empty node at sector %d", c.ref.loc)
		}
		h := hi
		if i+1 < len(n.ents) {
			h = &n.ents[i+1].k
		}
		if err := s.walk(c, &e.k, h, records); err != nil {
			return err
		}
	}
	return nil
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

// run is the committer: it commits the pending batch whenever asked, at most
// once per MinAnchorInterval, so that everything staged meanwhile shares one
// flush and one anchor write.
func (s *Store) run() {
	defer close(s.done)
	for {
		closing := false
		select {
		case <-s.kick:
		case <-s.closing:
			closing = true
		}
		if wait := time.Until(s.lastAnchor.Add(s.opts.MinAnchorInterval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.closing:
				<-t.C
				closing = true
			}
		}
		s.commitPending()
		if closing {
			return
		}
	}
}

func (s *Store) commitPending() {
	s.mu.Lock()
	b := s.pending
	if b.empty() {
		s.mu.Unlock()
		return
	}
	s.pending = newBatch()
	if s.failed != nil {
		b.err = s.failed
		close(b.done)
		s.mu.Unlock()
		return
	}
	s.inflight = b
	s.mu.Unlock()

	seq, err := s.commitBatch(b)

	s.mu.Lock()
	s.inflight = nil
	if err != nil && s.failed == nil {
		// Not anchored: keep the changes staged, under any newer ones.
		for k, c := range b.changes {
			if _, ok := s.pending.changes[k]; !ok {
				s.pending.changes[k] = c
			}
		}
		s.pending.shred = s.pending.shred || b.shred
	}
	if err == nil {
		s.stats.ChangesCommitted += uint64(len(b.changes))
		for _, c := range b.changes {
			clear(c.rec)
		}
	}
	b.seq, b.err = seq, err
	close(b.done)
	s.mu.Unlock()
}

func (s *Store) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return s.failed
}

// commitBatch writes the new tree, flushes, and anchors it.
func (s *Store) commitBatch(b *batch) (uint64, error) {
	s.treeMu.RLock()
	t := &txn{s: s, root: s.root, version: s.st.seq + 1, max: s.max}
	st := s.st
	s.treeMu.RUnlock()

	keys := make([][32]byte, 0, len(b.changes))
	for k := range b.changes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y [32]byte) int { return bytes.Compare(x[:], y[:]) })
	for i := range keys {
		k := &keys[i]
		var err error
		if c := b.changes[*k]; c.del {
			err = t.del(k)
		} else {
			err = t.put(k, c.rec)
		}
		if err != nil {
			return 0, err
		}
	}
	// A change always replaces the root (its path is copied), though the
	// new root may be a clean node: an untouched child that a collapse
	// promoted.
	if t.root == s.root && !b.shred {
		return st.seq, nil // nothing changed (e.g. deletes of absent ids)
	}
	_, err := t.write(t.root)
	if err == nil {
		var n uint64
		n, err = t.flushWrites(s.dev)
		s.mu.Lock()
		s.stats.BytesWritten += n
		s.mu.Unlock()
	}
	if err == nil {
		err = s.dev.Flush()
		s.mu.Lock()
		s.stats.Flushes++
		s.mu.Unlock()
	}
	if err != nil {
		t.rollback()
		return 0, err
	}
	epoch := st.epoch
	if b.shred {
		epoch++
	}
	records := uint64(int64(st.records) + t.delta)
	if err := s.writeAnchor(t.version, epoch, t.root, records); err != nil {
		return 0, s.fail(err)
	}
	t.release()
	s.mu.Lock()
	s.stats.Commits++
	s.mu.Unlock()
	s.updateStats()
	return t.version, nil
}

// writeAnchor anchors the tree at root (written and flushed) and publishes it
// as the committed state.
func (s *Store) writeAnchor(seq, epoch uint64, root *node, records uint64) error {
	st := anchorState{
		storeID: s.storeID, seq: seq, epoch: epoch, counter: s.counter,
		level: root.level, root: root.ref, records: records,
	}
	c, err := s.anc.Write(st.encode(&s.keys))
	s.lastAnchor = time.Now()
	if err != nil {
		return err
	}
	if c <= s.counter {
		return tamperedf("anchor write counter went from %d to %d", s.counter, c)
	}
	s.counter = c
	s.treeMu.Lock()
	s.st, s.root = st, root
	s.treeMu.Unlock()
	s.mu.Lock()
	s.stats.AnchorWrites++
	s.mu.Unlock()
	return nil
}

func (s *Store) updateStats() {
	s.treeMu.RLock()
	st := s.st
	s.treeMu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Seq, s.stats.Epoch, s.stats.Records = st.seq, st.epoch, st.records
	s.stats.WriteCounter = s.counter
	s.stats.Height = int(st.level) + 1
	s.stats.TotalSectors = s.groups * nodeSectors
	s.stats.FreeSectors = s.alloc.free
}
