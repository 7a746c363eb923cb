package vault

import (
	"io"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// ticketPurpose says what a realm ticket may be used for (REALMS.md 7,
// "Tickets"): all tickets share one handle space, so each records its own.
type ticketPurpose uint8

const (
	ticketEvaluation ticketPurpose = iota + 1 // an evaluation counted it: unlock
	ticketSession                             // a purpose-1 challenge: unlock, nothing counted
	ticketRegister                            // a purpose-2 challenge: open registration
)

// maxTicketsPerUser bounds one account's live tickets, so that one account
// cannot fill the table for the others.
const maxTicketsPerUser = 4

// realmTicket is a realm's answer to an evaluation or a challenge, waiting
// for its unlock or registration. RAM only, single use.
//
// A ticket made for a session keeps the version's unlock key, so that the
// tag is checked before anything is re-read (N4). Only the final ticket,
// the one whose evaluation committed the tombstone, keeps the whole record:
// its secrets exist nowhere else.
type realmTicket struct {
	purpose      ticketPurpose
	userID       []byte
	versionID    []byte
	manifestHash []byte
	nonce        []byte
	index        uint
	unlockKey    []byte
	share        []byte       // an evaluation's share, between its count and its evaluation only
	counted      *realmRecord // an evaluation's record as counted, without secrets, for its receipt
	attempt      uint64       // the attempts total this ticket counted, or found at issue
	final        bool         // this ticket's evaluation committed the tombstone
	rec          *realmRecord // the final ticket's copy of the record, secrets included
	watch        *recordWatch // a register ticket's view of writes to the record
	unwatch      func()

	handle  handle
	expires time.Time
}

func (t *realmTicket) wipe() {
	clear(t.unlockKey)
	clear(t.nonce)
	clear(t.share)
	t.rec.wipe()
	if t.unwatch != nil {
		t.unwatch()
		t.unwatch = nil
	}
}

// ticketTable holds the realm tickets. It is bounded twice: in total, and
// per user id. A fifth ticket of one user drops that user's oldest
// challenge or register ticket (free to ask again); an evaluation ticket
// is never dropped before it expires, so a fifth ticket while four
// evaluations are pending is refused, before anything is counted.
type ticketTable struct {
	mu       sync.Mutex
	byHandle map[handle]*realmTicket
	users    map[string]*userTickets
	reserved int
	max      int
	ttl      time.Duration
}

type userTickets struct {
	live     []*realmTicket // in the order issued
	reserved int
}

func newTicketTable(max int, ttl time.Duration) *ticketTable {
	return &ticketTable{byHandle: map[handle]*realmTicket{}, users: map[string]*userTickets{}, max: max, ttl: ttl}
}

// reserve promises a place for one ticket of userID, or reports busy. It
// may drop the user's oldest ticket that counted nothing.
func (t *ticketTable) reserve(now time.Time, userID []byte) bool {
	t.mu.Lock()
	var gone []*realmTicket
	u := t.users[string(userID)]
	if u != nil && len(u.live)+u.reserved >= maxTicketsPerUser {
		gone = append(gone, t.expireUserLocked(u, now)...)
		if len(u.live)+u.reserved >= maxTicketsPerUser {
			for _, old := range u.live {
				if old.purpose != ticketEvaluation {
					t.removeLocked(old)
					gone = append(gone, old)
					break
				}
			}
		}
	}
	if len(t.byHandle)+t.reserved >= t.max {
		gone = append(gone, t.expireLocked(now)...)
	}
	u = t.users[string(userID)]
	ok := len(t.byHandle)+t.reserved < t.max && (u == nil || len(u.live)+u.reserved < maxTicketsPerUser)
	if ok {
		if u == nil {
			u = &userTickets{}
			t.users[string(userID)] = u
		}
		u.reserved++
		t.reserved++
	}
	t.mu.Unlock()
	for _, g := range gone {
		g.wipe()
	}
	return ok
}

func (t *ticketTable) unreserve(userID []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reserved--
	if u := t.users[string(userID)]; u != nil {
		u.reserved--
		t.forgetUserIfEmptyLocked(string(userID), u)
	}
}

// addReserved stores tk, under a fresh random handle, in the place reserve
// promised; the reservation is used up whether or not it succeeds.
func (t *ticketTable) addReserved(random io.Reader, now time.Time, tk *realmTicket) (handle, error) {
	h, err := newHandle(random)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reserved--
	u := t.users[string(tk.userID)]
	u.reserved--
	if err == nil {
		if _, taken := t.byHandle[h]; taken {
			err = protocol.Errorf(protocol.CodeInternal, "handle collision")
		}
	}
	if err != nil {
		t.forgetUserIfEmptyLocked(string(tk.userID), u)
		return h, err
	}
	tk.handle, tk.expires = h, now.Add(t.ttl)
	t.byHandle[h] = tk
	u.live = append(u.live, tk)
	return h, nil
}

// take removes and returns the ticket for h: single use, whatever the
// caller then finds. An expired ticket is wiped and reported absent.
func (t *ticketTable) take(h []byte, now time.Time) (*realmTicket, bool) {
	if len(h) != protocol.HandleSize {
		return nil, false
	}
	t.mu.Lock()
	tk, ok := t.byHandle[handle(h)]
	if ok {
		t.removeLocked(tk)
	}
	t.mu.Unlock()
	if !ok {
		return nil, false
	}
	if now.After(tk.expires) {
		tk.wipe()
		return nil, false
	}
	return tk, true
}

func (t *ticketTable) removeLocked(tk *realmTicket) {
	delete(t.byHandle, tk.handle)
	u := t.users[string(tk.userID)]
	if u == nil {
		return
	}
	for i, x := range u.live {
		if x == tk {
			u.live = append(u.live[:i], u.live[i+1:]...)
			break
		}
	}
	t.forgetUserIfEmptyLocked(string(tk.userID), u)
}

func (t *ticketTable) forgetUserIfEmptyLocked(user string, u *userTickets) {
	if len(u.live) == 0 && u.reserved == 0 && t.users[user] == u {
		delete(t.users, user)
	}
}

func (t *ticketTable) expireUserLocked(u *userTickets, now time.Time) []*realmTicket {
	var gone []*realmTicket
	for _, tk := range append([]*realmTicket(nil), u.live...) {
		if now.After(tk.expires) {
			t.removeLocked(tk)
			gone = append(gone, tk)
		}
	}
	return gone
}

func (t *ticketTable) expireLocked(now time.Time) []*realmTicket {
	var gone []*realmTicket
	for _, tk := range t.byHandle {
		if now.After(tk.expires) {
			t.removeLocked(tk)
			gone = append(gone, tk)
		}
	}
	return gone
}

func (t *ticketTable) expire(now time.Time) {
	t.mu.Lock()
	gone := t.expireLocked(now)
	t.mu.Unlock()
	for _, g := range gone {
		g.wipe()
	}
}

func (t *ticketTable) clear() {
	t.mu.Lock()
	var all []*realmTicket
	for _, tk := range t.byHandle {
		t.removeLocked(tk)
		all = append(all, tk)
	}
	t.mu.Unlock()
	for _, g := range all {
		g.wipe()
	}
}

func (t *ticketTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byHandle)
}

// realmFinals remembers, per user, until when the final ticket may still
// revive the record, for locked receipts' revivable_ms. RAM only.
type realmFinals struct {
	mu sync.Mutex
	m  map[string]realmFinal
}

type realmFinal struct {
	ticket  *realmTicket
	expires time.Time
}

func (f *realmFinals) set(tk *realmTicket, expires time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]realmFinal{}
	}
	f.m[string(tk.userID)] = realmFinal{ticket: tk, expires: expires}
}

func (f *realmFinals) forget(tk *realmTicket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[string(tk.userID)]; ok && e.ticket == tk {
		delete(f.m, string(tk.userID))
	}
}

func (f *realmFinals) sweep(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, e := range f.m {
		if now.After(e.expires) {
			delete(f.m, u)
		}
	}
}

func (f *realmFinals) expiry(userID []byte) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[string(userID)].expires
}
