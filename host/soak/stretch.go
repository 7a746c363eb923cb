package soak

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/cofferhsm/coffer/protocol"
)

// stretcher is the protocol clients' key stretch: Argon2id on the OPRF
// output (SPEC.md, "OPAQUE"), computed once per distinct input and at most
// cap(slots) at a time.
//
// Caching is exact, not an approximation: the OPRF output is a
// deterministic function of the record's OPRF key and the password, so a
// login with the same password on the same registration stretches the same
// bytes. A new registration (a password change, a re-registration after a
// lockout) draws a fresh OPRF key and misses the cache. The cache is keyed
// by SHA-256 of the input and holds 32 bytes per entry.
type stretcher struct {
	params Stretch
	slots  chan struct{}

	mu   sync.Mutex
	done map[[32]byte][]byte

	computed atomic.Int64 // Argon2id runs
	hits     atomic.Int64
	busy     atomic.Int64 // nanoseconds spent in Argon2id
}

func newStretcher(params Stretch, slots int) *stretcher {
	return &stretcher{params: params, slots: make(chan struct{}, slots), done: map[[32]byte][]byte{}}
}

// stretch has the signature of opaque.KeyStretch. The caller wipes what it
// gets, so it gets a copy.
func (s *stretcher) stretch(oprfOutput []byte) []byte {
	k := sha256.Sum256(oprfOutput)
	s.mu.Lock()
	v, ok := s.done[k]
	s.mu.Unlock()
	if ok {
		s.hits.Add(1)
		return append([]byte(nil), v...)
	}
	s.slots <- struct{}{}
	start := time.Now()
	v = argon2.IDKey(oprfOutput, nil, s.params.Passes, s.params.MemoryKiB, s.params.Lanes, protocol.Argon2idLength)
	s.busy.Add(int64(time.Since(start)))
	<-s.slots
	s.computed.Add(1)
	s.mu.Lock()
	s.done[k] = v
	s.mu.Unlock()
	return append([]byte(nil), v...)
}
