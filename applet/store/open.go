package store

// This file creates a store (Format) and recovers the last committed one
// (Open): the anchor names the state, and the whole tree is verified, and
// its sectors claimed, before anything is served.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/internal/storage"
)

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
