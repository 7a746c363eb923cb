package fakehost

import (
	"context"
	"maps"
	"sync"
)

// SnapStore is a vault.Store in RAM that can be copied and put back, to
// roll a vault back in time. It authenticates nothing.
type SnapStore struct {
	mu        sync.Mutex
	committed map[string][]byte
	staged    map[string][]byte // nil value: a delete
	seq       uint64
}

// NewSnapStore returns an empty store.
func NewSnapStore() *SnapStore {
	return &SnapStore{committed: map[string][]byte{}, staged: map[string][]byte{}}
}

func (s *SnapStore) Get(id []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.staged[string(id)]; ok {
		return append([]byte(nil), v...), v != nil, nil
	}
	v, ok := s.committed[string(id)]
	return append([]byte(nil), v...), ok, nil
}

func (s *SnapStore) Put(id, rec []byte) error {
	s.mu.Lock()
	s.staged[string(id)] = append([]byte{}, rec...)
	s.mu.Unlock()
	return nil
}

func (s *SnapStore) Delete(id []byte) error {
	s.mu.Lock()
	s.staged[string(id)] = nil
	s.mu.Unlock()
	return nil
}

func (s *SnapStore) Shred() {}

func (s *SnapStore) Commit(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.staged) == 0 {
		return s.seq, nil
	}
	for k, v := range s.staged {
		if v == nil {
			delete(s.committed, k)
		} else {
			s.committed[k] = v
		}
	}
	s.staged = map[string][]byte{}
	s.seq++
	return s.seq, nil
}

type snapshot struct {
	committed map[string][]byte
	seq       uint64
}

func (s *SnapStore) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshot{maps.Clone(s.committed), s.seq}
}

func (s *SnapStore) restore(snap snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committed = maps.Clone(snap.committed)
	s.staged = map[string][]byte{}
	s.seq = snap.seq
}
