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
//
// Entries are wiped after the table's lock is released, never under it: a
// session's wipe waits for the session's own lock, which a command holds
// while it waits for a commit and then takes the table's lock to end the
// session. Wiping under the table's lock deadlocked the two.
type table[T wiper] struct {
	mu       sync.Mutex
	entries  map[handle]tableEntry[T]
	reserved int // places promised by reserve and not yet filled or given back
	max      int
	ttl      time.Duration
}

func newTable[T wiper](max int, ttl time.Duration) *table[T] {
	return &table[T]{entries: make(map[handle]tableEntry[T]), max: max, ttl: ttl}
}

// add stores v under a fresh random handle.
func (t *table[T]) add(random io.Reader, now time.Time, v T) (handle, error) {
	if !t.reserve(now) {
		return handle{}, protocol.Errorf(protocol.CodeBusy, "too many operations in flight")
	}
	return t.addReserved(random, now, v)
}

// reserve promises a place for an entry that addReserved will store later,
// or unreserve give back. A caller that must not fail for want of room after
// it has done something irreversible (counted an attempt) reserves first.
func (t *table[T]) reserve(now time.Time) bool {
	t.mu.Lock()
	var expired []T
	if len(t.entries)+t.reserved >= t.max {
		expired = t.expireLocked(now)
	}
	ok := len(t.entries)+t.reserved < t.max
	if ok {
		t.reserved++
	}
	t.mu.Unlock()
	wipeAll(expired)
	return ok
}

func (t *table[T]) unreserve() {
	t.mu.Lock()
	t.reserved--
	t.mu.Unlock()
}

// addReserved stores v under a fresh random handle in a place reserve
// promised; it uses up the reservation whether or not it succeeds.
func (t *table[T]) addReserved(random io.Reader, now time.Time, v T) (handle, error) {
	h, err := newHandle(random)
	if err != nil {
		t.unreserve()
		return h, err
	}
	return h, t.putReserved(h, now, v)
}

// addWithHandle stores v under a handle the caller drew (a session takes
// over the handle of the login that opened it).
func (t *table[T]) addWithHandle(hb []byte, now time.Time, v T) (handle, error) {
	h := handle(hb)
	if !t.reserve(now) {
		return h, protocol.Errorf(protocol.CodeBusy, "too many operations in flight")
	}
	return h, t.putReserved(h, now, v)
}

func (t *table[T]) putReserved(h handle, now time.Time, v T) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reserved--
	if _, taken := t.entries[h]; taken {
		// 128 random bits collided: the random source is broken.
		return protocol.Errorf(protocol.CodeInternal, "handle collision")
	}
	t.entries[h] = tableEntry[T]{value: v, expires: now.Add(t.ttl)}
	return nil
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

// addReservedWithHandle stores v under h in a place reserve promised; it
// uses up the reservation whether or not it succeeds.
func (t *table[T]) addReservedWithHandle(hb []byte, now time.Time, v T) (handle, error) {
	h := handle(hb)
	return h, t.putReserved(h, now, v)
}

// peek returns the entry for h without extending its life.
func (t *table[T]) peek(h []byte, now time.Time) (T, bool) {
	return t.lookup(h, now, false)
}

// touch returns the entry for h and extends its life (an idle timeout).
func (t *table[T]) touch(h []byte, now time.Time) (T, bool) {
	return t.lookup(h, now, true)
}

func (t *table[T]) lookup(h []byte, now time.Time, extend bool) (T, bool) {
	var zero T
	if len(h) != protocol.HandleSize {
		return zero, false
	}
	t.mu.Lock()
	e, ok := t.entries[handle(h)]
	if !ok {
		t.mu.Unlock()
		return zero, false
	}
	if now.After(e.expires) {
		delete(t.entries, handle(h))
		t.mu.Unlock()
		e.value.wipe()
		return zero, false
	}
	if extend {
		e.expires = now.Add(t.ttl)
		t.entries[handle(h)] = e
	}
	t.mu.Unlock()
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
	expired := t.expireLocked(now)
	t.mu.Unlock()
	wipeAll(expired)
}

// expireLocked removes the expired entries and returns them, for the caller
// to wipe once it has released the lock.
func (t *table[T]) expireLocked(now time.Time) []T {
	var expired []T
	for h, e := range t.entries {
		if now.After(e.expires) {
			delete(t.entries, h)
			expired = append(expired, e.value)
		}
	}
	return expired
}

func (t *table[T]) clear() {
	t.mu.Lock()
	all := make([]T, 0, len(t.entries))
	for h, e := range t.entries {
		delete(t.entries, h)
		all = append(all, e.value)
	}
	t.mu.Unlock()
	wipeAll(all)
}

func wipeAll[T wiper](values []T) {
	for _, v := range values {
		v.wipe()
	}
}

func (t *table[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// values returns the entries the table holds now.
func (t *table[T]) values() []T {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]T, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e.value)
	}
	return out
}
