package store

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cofferhsm/coffer/internal/storage"
)

// The tree is a B+tree keyed by the hashed user id. Leaves hold, for each
// record, its key and a ref (location, hash, key) to its record slot; internal
// nodes hold, for each child, a lower bound of the child's keys and a ref to
// it. Every node and record is sealed under its own fresh key, held in its
// parent's entry; the root's ref is in the anchor. A parent therefore both
// authenticates its children (hash) and is the only place their keys exist.
//
// A commit never modifies a block in place: it writes new copies of the
// records and nodes it changes, and of their ancestors (copy-on-write), into
// free space; the old copies stay intact until the new root is anchored.

// nodeCache keeps verified internal nodes in RAM (the Secure World's RAM is
// inside the trust boundary). Leaves and records are always read and
// verified from the device. Eviction is CLOCK: a hit only sets a reference
// bit, so concurrent readers share a read lock.
type nodeCache struct {
	mu   sync.RWMutex
	max  int
	m    map[uint64]*cacheEntry
	ring []*cacheEntry
	hand int
}

type cacheEntry struct {
	n   *node
	ref atomic.Bool
	idx int // position in ring
}

func newNodeCache(max int) *nodeCache {
	return &nodeCache{max: max, m: make(map[uint64]*cacheEntry)}
}

func (c *nodeCache) get(r *ref) *node {
	c.mu.RLock()
	e := c.m[r.loc]
	c.mu.RUnlock()
	if e != nil && e.n.ref.hash == r.hash && e.n.ref.key == r.key {
		e.ref.Store(true)
		return e.n
	}
	return nil
}

func (c *nodeCache) put(n *node) {
	if c.max <= 0 || n.leaf() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[n.ref.loc]; ok {
		e.n = n
		return
	}
	e := &cacheEntry{n: n}
	if len(c.ring) < c.max {
		e.idx = len(c.ring)
		c.ring = append(c.ring, e)
	} else {
		for {
			c.hand = (c.hand + 1) % len(c.ring)
			if old := c.ring[c.hand]; !old.ref.Swap(false) {
				delete(c.m, old.n.ref.loc)
				break
			}
		}
		e.idx = c.hand
		c.ring[c.hand] = e
	}
	c.m[n.ref.loc] = e
}

// evict drops the node at loc (its sectors are about to be reused) and
// zeroes the keys it held.
func (c *nodeCache) evict(loc uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[loc]
	if !ok {
		return
	}
	delete(c.m, loc)
	last := c.ring[len(c.ring)-1]
	c.ring[e.idx], last.idx = last, e.idx
	c.ring = c.ring[:len(c.ring)-1]
	wipeNode(e.n)
}

func (c *nodeCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.ring)
}

func wipeNode(n *node) {
	// Only keys are secret; a reader holding n finished before the commit
	// that superseded it was published (see Store.treeMu).
	for i := range n.ents {
		clear(n.ents[i].ref.key[:])
	}
	clear(n.ref.key[:])
}

// loadNode returns the verified node r points at, which must be at level.
func (s *Store) loadNode(r *ref, level uint8) (*node, error) {
	if level > 0 {
		if n := s.cache.get(r); n != nil {
			return n, nil
		}
	}
	if r.loc%nodeSectors != 0 || r.loc < nodeSectors || r.loc/nodeSectors >= s.groups {
		return nil, tamperedf("node location %d out of range", r.loc)
	}
	b := make([]byte, NodeSize)
	if err := s.dev.ReadSectors(r.loc, b); err != nil {
		return nil, err
	}
	n, err := openNode(b, r, &s.storeID, level)
	if err != nil {
		return nil, err
	}
	s.cache.put(n)
	return n, nil
}

func (s *Store) readRecord(r *ref, id *[32]byte) ([]byte, error) {
	if r.loc < nodeSectors || r.loc/nodeSectors >= s.groups {
		return nil, tamperedf("record location %d out of range", r.loc)
	}
	b := make([]byte, storage.SectorSize)
	if err := s.dev.ReadSectors(r.loc, b); err != nil {
		return nil, err
	}
	rec, _, err := openRecord(b, r, &s.storeID, id)
	return rec, err
}

// lookup finds the record for hashed id k in the tree rooted at root.
func (s *Store) lookup(root *node, k *[32]byte) ([]byte, bool, error) {
	n := root
	for !n.leaf() {
		if len(n.ents) == 0 {
			return nil, false, tampered("empty internal node")
		}
		i := n.childIndex(k)
		c, err := s.loadNode(&n.ents[i].ref, n.level-1)
		if err != nil {
			return nil, false, err
		}
		n = c
	}
	i, ok := n.search(k)
	if !ok {
		return nil, false, nil
	}
	rec, err := s.readRecord(&n.ents[i].ref, k)
	if err != nil {
		return nil, false, err
	}
	return rec, true, nil
}

// txn builds the next version of the tree from a batch of changes.
type txn struct {
	s       *Store
	root    *node
	version uint64 // sequence of the commit being built
	max     int    // node capacity (MaxEntries; smaller in tests)

	freedNodes   []uint64 // sectors superseded by this commit
	freedRecords []uint64
	allocNodes   []uint64 // sectors allocated by this commit
	allocRecords []uint64
	writes       []blockWrite
	written      []*node // nodes written, to cache once published
	delta        int64   // change in the number of records
}

type blockWrite struct {
	loc  uint64
	data []byte
}

func (t *txn) minEntries() int { return max(t.max/3, 1) }

// mut returns a private, modifiable copy of n (or n if it already is one),
// and marks the clean original's sectors as superseded.
func (t *txn) mut(n *node) *node {
	if !n.clean {
		return n
	}
	c := &node{level: n.level, ents: make([]entry, len(n.ents), t.max+1)}
	copy(c.ents, n.ents)
	t.freedNodes = append(t.freedNodes, n.ref.loc)
	return c
}

func (t *txn) child(n *node, i int) (*node, error) {
	if c := n.ents[i].child; c != nil {
		return c, nil
	}
	return t.s.loadNode(&n.ents[i].ref, n.level-1)
}

func (t *txn) put(k *[32]byte, rec []byte) error {
	nr, right, err := t.insert(t.root, k, rec)
	if err != nil {
		return err
	}
	if right != nil {
		if nr.level >= maxLevel {
			return errors.New("store: tree too high")
		}
		nr = &node{level: nr.level + 1, ents: []entry{
			{k: nr.ents[0].k, child: nr},
			{k: right.ents[0].k, child: right},
		}}
	}
	t.root = nr
	return nil
}

func (t *txn) insert(n *node, k *[32]byte, rec []byte) (*node, *node, error) {
	if n.leaf() {
		i, eq := n.search(k)
		n = t.mut(n)
		if eq {
			e := &n.ents[i]
			if !e.dirty {
				t.freedRecords = append(t.freedRecords, e.ref.loc)
			}
			e.rec, e.dirty, e.ref = rec, true, ref{}
		} else {
			n.ents = slices.Insert(n.ents, i, entry{k: *k, rec: rec, dirty: true})
			t.delta++
		}
	} else {
		i := n.childIndex(k)
		c, err := t.child(n, i)
		if err != nil {
			return nil, nil, err
		}
		nc, right, err := t.insert(c, k, rec)
		if err != nil {
			return nil, nil, err
		}
		n = t.mut(n)
		n.ents[i].child = nc
		if bytes.Compare(k[:], n.ents[i].k[:]) < 0 {
			n.ents[i].k = *k
		}
		if right != nil {
			n.ents = slices.Insert(n.ents, i+1, entry{k: right.ents[0].k, child: right})
		}
	}
	if len(n.ents) > t.max {
		mid := len(n.ents) / 2
		right := &node{level: n.level, ents: make([]entry, len(n.ents)-mid, t.max+1)}
		copy(right.ents, n.ents[mid:])
		clear(n.ents[mid:])
		n.ents = n.ents[:mid]
		return n, right, nil
	}
	return n, nil, nil
}

func (t *txn) del(k *[32]byte) error {
	nr, found, err := t.remove(t.root, k)
	if err != nil || !found {
		return err
	}
	// An internal root with one child is replaced by the child; the child
	// may be an untouched node with a single child itself.
	for !nr.leaf() && len(nr.ents) <= 1 {
		if nr.clean {
			t.freedNodes = append(t.freedNodes, nr.ref.loc)
		}
		if len(nr.ents) == 0 {
			nr = &node{}
			break
		}
		c, err := t.child(nr, 0)
		if err != nil {
			return err
		}
		nr = c
	}
	t.root = nr
	return nil
}

func (t *txn) remove(n *node, k *[32]byte) (*node, bool, error) {
	if n.leaf() {
		i, eq := n.search(k)
		if !eq {
			return n, false, nil
		}
		n = t.mut(n)
		if e := &n.ents[i]; !e.dirty {
			t.freedRecords = append(t.freedRecords, e.ref.loc)
		}
		n.ents = slices.Delete(n.ents, i, i+1)
		t.delta--
		return n, true, nil
	}
	i := n.childIndex(k)
	c, err := t.child(n, i)
	if err != nil {
		return nil, false, err
	}
	nc, found, err := t.remove(c, k)
	if err != nil || !found {
		return n, found, err
	}
	n = t.mut(n)
	n.ents[i].child = nc
	switch {
	case len(nc.ents) == 0:
		n.ents = slices.Delete(n.ents, i, i+1)
	case len(nc.ents) < t.minEntries():
		if err := t.merge(n, i); err != nil {
			return nil, false, err
		}
	}
	return n, true, nil
}

// merge joins the underfull child i of n with a neighbour if they fit in one
// node.
func (t *txn) merge(n *node, i int) error {
	j := i + 1
	if j >= len(n.ents) {
		j = i - 1
	}
	if j < 0 {
		return nil
	}
	a, b := min(i, j), max(i, j)
	ca, err := t.child(n, a)
	if err != nil {
		return err
	}
	cb, err := t.child(n, b)
	if err != nil {
		return err
	}
	if len(ca.ents)+len(cb.ents) > t.max {
		return nil
	}
	m := t.mut(ca)
	m.ents = append(m.ents, cb.ents...)
	if cb.clean {
		t.freedNodes = append(t.freedNodes, cb.ref.loc)
	}
	n.ents[a].child = m
	n.ents = slices.Delete(n.ents, b, b+1)
	return nil
}

// write seals and queues the writes of every dirty record and node under n,
// children first, and returns n's new ref.
func (t *txn) write(n *node) (ref, error) {
	if n.clean {
		return n.ref, nil
	}
	a := t.s.alloc
	for i := range n.ents {
		e := &n.ents[i]
		switch {
		case n.leaf() && e.dirty:
			loc, err := a.allocRecord()
			if err != nil {
				return ref{}, err
			}
			t.allocRecords = append(t.allocRecords, loc)
			b, r := sealRecord(e.rec, &t.s.storeID, loc, &e.k, t.version)
			t.writes = append(t.writes, blockWrite{loc, b})
			e.ref, e.rec, e.dirty = r, nil, false
		case !n.leaf() && e.child != nil:
			r, err := t.write(e.child)
			if err != nil {
				return ref{}, err
			}
			e.ref, e.child = r, nil
		}
	}
	loc, err := a.allocNode()
	if err != nil {
		return ref{}, err
	}
	t.allocNodes = append(t.allocNodes, loc)
	p := encodeNode(n)
	b, r := sealNode(p, &t.s.storeID, loc)
	clear(p)
	t.writes = append(t.writes, blockWrite{loc, b})
	n.ref, n.clean = r, true
	t.written = append(t.written, n)
	return r, nil
}

// flushWrites issues the queued writes in address order, joining adjacent
// blocks, and returns the number of bytes written.
func (t *txn) flushWrites(dev storage.Device) (uint64, error) {
	slices.SortFunc(t.writes, func(x, y blockWrite) int { return cmp.Compare(x.loc, y.loc) })
	var total uint64
	const maxRun = 64 * storage.SectorSize
	for i := 0; i < len(t.writes); {
		run := t.writes[i].data
		loc := t.writes[i].loc
		next := loc + uint64(len(run)/storage.SectorSize)
		j := i + 1
		if j < len(t.writes) && t.writes[j].loc == next {
			run = append([]byte(nil), run...)
			for ; j < len(t.writes) && t.writes[j].loc == next && len(run) < maxRun; j++ {
				run = append(run, t.writes[j].data...)
				next += uint64(len(t.writes[j].data) / storage.SectorSize)
			}
		}
		if err := dev.WriteSectors(loc, run); err != nil {
			return total, err
		}
		total += uint64(len(run))
		i = j
	}
	return total, nil
}

// rollback returns the sectors this commit allocated; it is only valid
// before the commit is anchored.
func (t *txn) rollback() {
	for _, loc := range t.allocNodes {
		t.s.alloc.freeNode(loc)
	}
	for _, loc := range t.allocRecords {
		t.s.alloc.freeRecord(loc)
	}
}

// release frees the sectors this commit superseded; it is only valid once
// the commit is anchored (the previous tree can no longer be recovered).
func (t *txn) release() {
	for _, loc := range t.freedNodes {
		t.s.cache.evict(loc)
		t.s.alloc.freeNode(loc)
	}
	for _, loc := range t.freedRecords {
		t.s.alloc.freeRecord(loc)
	}
	for _, n := range t.written {
		t.s.cache.put(n)
	}
}
