package tos

import (
	"context"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// Relay carries protocol requests from the transport (protocol.ServeStream
// calls Handle, one goroutine per request) to the applet, which fetches them
// with Next and answers with Reply. Requests are tagged by the relay; the
// applet only ever sees tags it was given, and a reply under any other tag is
// dropped.
//
// A request waits in the queue until the applet takes it, so requests that
// arrive while the applet (re)starts are served once it is up. When the
// applet stops, requests it had taken get an outcome-unknown reply (the
// applet may have acted on them, a login start counted, as after a lost
// connection); queued ones stay. A request that times out gets busy if the
// applet never took it (nothing happened) and outcome-unknown if it did.
type Relay struct {
	// Timeout bounds how long Handle waits for a reply: 2 minutes if zero.
	Timeout time.Duration

	mu       sync.Mutex
	queue    []*pending
	taken    map[uint32]*pending
	nextTag  uint32
	arrived  chan struct{} // signalled (capacity 1) when the queue grows
	dropped  uint64        // replies under unknown tags
	answered uint64
}

type pending struct {
	tag   uint32
	req   []byte
	reply chan []byte // capacity 1
}

// NewRelay returns an empty relay.
func NewRelay() *Relay {
	return &Relay{taken: map[uint32]*pending{}, arrived: make(chan struct{}, 1)}
}

// Handle queues request for the applet and returns its reply. It is a
// protocol.Handler.
func (r *Relay) Handle(ctx context.Context, request []byte) []byte {
	p := &pending{req: request, reply: make(chan []byte, 1)}
	r.mu.Lock()
	r.nextTag++
	if r.nextTag == 0 {
		r.nextTag++
	}
	p.tag = r.nextTag
	r.queue = append(r.queue, p)
	r.mu.Unlock()
	r.signal()

	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-p.reply:
		return b
	case <-ctx.Done():
	case <-t.C:
	}
	// Give up: withdraw the request, and forget it if the applet took it
	// (its late reply is dropped).
	r.mu.Lock()
	taken := r.withdraw(p)
	r.mu.Unlock()
	select {
	case b := <-p.reply: // answered meanwhile
		return b
	default:
	}
	if taken {
		return protocol.EncodeError(protocol.Errorf(protocol.CodeOutcomeUnknown,
			"the vault took the request and did not answer in time; it may have acted on it (a login attempt may have been counted)"))
	}
	return protocol.EncodeError(protocol.Errorf(protocol.CodeBusy, "the vault did not take the request in time; nothing was done"))
}

// withdraw removes p from the queue or from the requests the applet took,
// and reports whether the applet had taken it. Called with r.mu held.
func (r *Relay) withdraw(p *pending) (taken bool) {
	for i, q := range r.queue {
		if q == p {
			r.queue = append(r.queue[:i], r.queue[i+1:]...)
			return false
		}
	}
	if r.taken[p.tag] == p {
		delete(r.taken, p.tag)
		return true
	}
	// Answered (Reply or AppletStopped): the reply is in p.reply.
	return true
}

func (r *Relay) signal() {
	select {
	case r.arrived <- struct{}{}:
	default:
	}
}

// Next hands the oldest queued request to the applet.
func (r *Relay) Next() (tag uint32, request []byte, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return 0, nil, false
	}
	p := r.queue[0]
	r.queue[0] = nil
	r.queue = r.queue[1:]
	r.taken[p.tag] = p
	return p.tag, p.req, true
}

// Reply delivers the applet's reply to a request it took. It reports false
// for a tag that is not outstanding.
func (r *Relay) Reply(tag uint32, reply []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.taken[tag]
	if ok {
		delete(r.taken, tag)
		r.answered++
		// Under the lock, so that a Handle giving up finds the reply
		// either still owed (in taken) or already here. p.reply has
		// room: each request is answered once.
		p.reply <- reply
	} else {
		r.dropped++
	}
	return ok
}

// Wait returns true as soon as a request is queued, or false after d.
func (r *Relay) Wait(d time.Duration) bool {
	if r.Queued() > 0 {
		return true
	}
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-r.arrived:
			if r.Queued() > 0 {
				return true
			}
		case <-t.C:
			return r.Queued() > 0
		}
	}
}

// Queued is the number of requests waiting for the applet.
func (r *Relay) Queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// AppletStopped answers every request the applet had taken with
// outcome-unknown: it stopped before replying, so the client cannot know
// whether the request took effect. Queued requests wait for the next applet.
func (r *Relay) AppletStopped() {
	lost := protocol.EncodeError(protocol.Errorf(protocol.CodeOutcomeUnknown, "the vault restarted before answering; the request may or may not have taken effect"))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.taken {
		p.reply <- lost // as in Reply: under the lock, never blocks
	}
	r.taken = map[uint32]*pending{}
}

// Stats are counters for logs.
func (r *Relay) Stats() (answered, dropped uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answered, r.dropped
}
