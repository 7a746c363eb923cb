package vault

import (
	"io"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// wiper is RAM state holding secrets that must be overwritten when it is
// forgotten.
type wiper interface{ wipe() }

type handle = [protocol.HandleSize]byte

type tableEntry[T wiper] struct {
	value   T
	expires time.Time
}

// table holds one kind of RAM-only state (pending logins, sessions, pending
// registrations) under random handles. It is bounded in size and lifetime:
// a full table refuses new entries (the caller answers "busy") rather than
// evicting live ones, and every entry is wiped when it leaves.
type table[T wiper] struct {
	mu      sync.Mutex
	entries map[handle]tableEntry[T]
	max     int
	ttl     time.Duration
}

func newTable[T wiper](max int, ttl time.Duration) *table[T] {
	return &table[T]{entries: make(map[handle]tableEntry[T]), max: max, ttl: ttl}
}

// add stores v under a fresh random handle.
func (t *table[T]) add(random io.Reader, now time.Time, v T) (handle, error) {
	h, err := newHandle(random)
	if err != nil {
		return h, err
	}
	return t.addWithHandle(h[:], now, v)
}

// addWithHandle stores v under a handle the caller drew (a session takes
// over the handle of the login that opened it).
func (t *table[T]) addWithHandle(hb []byte, now time.Time, v T) (handle, error) {
	h := handle(hb)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) >= t.max {
		t.expireLocked(now)
		if len(t.entries) >= t.max {
			return h, protocol.Errorf(protocol.CodeBusy, "too many operations in flight")
		}
	}
	if _, taken := t.entries[h]; taken {
		// 128 random bits collided: the random source is broken.
		return h, protocol.Errorf(protocol.CodeInternal, "handle collision")
	}
	t.entries[h] = tableEntry[T]{value: v, expires: now.Add(t.ttl)}
	return h, nil
}

// hasRoom reports whether add would find room now.
func (t *table[T]) hasRoom(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) >= t.max {
		t.expireLocked(now)
	}
	return len(t.entries) < t.max
}

// take removes and returns the entry for h: single use. An expired entry is
// wiped and reported absent.
func (t *table[T]) take(h []byte, now time.Time) (T, bool) {
	var zero T
	if len(h) != protocol.HandleSize {
		return zero, false
	}
	t.mu.Lock()
	e, ok := t.entries[handle(h)]
	delete(t.entries, handle(h))
	t.mu.Unlock()
	if !ok {
		return zero, false
	}
	if now.After(e.expires) {
		e.value.wipe()
		return zero, false
	}
	return e.value, true
}

// touch returns the entry for h and extends its life (an idle timeout).
func (t *table[T]) touch(h []byte, now time.Time) (T, bool) {
	var zero T
	if len(h) != protocol.HandleSize {
		return zero, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[handle(h)]
	if !ok {
		return zero, false
	}
	if now.After(e.expires) {
		delete(t.entries, handle(h))
		e.value.wipe()
		return zero, false
	}
	e.expires = now.Add(t.ttl)
	t.entries[handle(h)] = e
	return e.value, true
}

func (t *table[T]) remove(h []byte) {
	if len(h) != protocol.HandleSize {
		return
	}
	t.mu.Lock()
	e, ok := t.entries[handle(h)]
	delete(t.entries, handle(h))
	t.mu.Unlock()
	if ok {
		e.value.wipe()
	}
}

// drop removes h without wiping it: for a caller that already holds the
// entry's own lock and wipes it itself.
func (t *table[T]) drop(h []byte) {
	if len(h) != protocol.HandleSize {
		return
	}
	t.mu.Lock()
	delete(t.entries, handle(h))
	t.mu.Unlock()
}

func (t *table[T]) expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
}

func (t *table[T]) expireLocked(now time.Time) {
	for h, e := range t.entries {
		if now.After(e.expires) {
			delete(t.entries, h)
			e.value.wipe()
		}
	}
}

func (t *table[T]) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, e := range t.entries {
		delete(t.entries, h)
		e.value.wipe()
	}
}

func (t *table[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
