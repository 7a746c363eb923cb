package store

// This file is the committer: one goroutine that makes everything staged
// since the last commit durable with one new tree, one flush and one anchor
// write.

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

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
	s.stats.RecordCapacity = estimateCapacity(st.records, s.stats.TotalSectors, s.stats.FreeSectors)
}
