package host

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cofferhsm/coffer/protocol"
)

// deviceQueue bounds the requests cofferd sends to one device: at most
// cap(slots) in flight, at most maxWaiting waiting for a slot, the rest
// refused at once (explicit backpressure, never an unbounded queue).
type deviceQueue struct {
	dev        Device
	slots      chan struct{}
	maxWaiting int64
	waiting    atomic.Int64
	inFlight   atomic.Int64
	polled     atomic.Pointer[polledState]
}

// polledState is what the poller learned from the device's own replies.
type polledState struct {
	connection   uint64 // DeviceInfo.Connects when learned
	identity     *protocol.Identity
	status       *protocol.Status
	statusErr    string
	notProvision bool
}

func (q *deviceQueue) info() DeviceInfo {
	if d, ok := q.dev.(interface{ Describe() DeviceInfo }); ok {
		return d.Describe()
	}
	return DeviceInfo{}
}

// insecure reports whether the device is known to be insecure, from what it
// says it is (DeviceInfo) or from its identity bundle.
func (q *deviceQueue) insecure() (insecure, known bool) {
	if q.info().Insecure {
		return true, true
	}
	if p := q.polled.Load(); p != nil && p.identity != nil {
		return p.identity.Insecure, true
	}
	return false, false
}

var (
	errQueueFull    = errors.New("device queue full")
	errQueueTimeout = errors.New("timed out waiting in the device queue; nothing was sent")
)

// do sends one request through the device's bounds.
func (q *deviceQueue) do(ctx context.Context, req []byte) ([]byte, error) {
	if !q.dev.Connected() {
		return nil, fmt.Errorf("%w: %s", ErrDisconnected, q.dev.Name())
	}
	select {
	case q.slots <- struct{}{}:
	default:
		if q.waiting.Add(1) > q.maxWaiting {
			q.waiting.Add(-1)
			return nil, errQueueFull
		}
		select {
		case q.slots <- struct{}{}:
			q.waiting.Add(-1)
		case <-ctx.Done():
			q.waiting.Add(-1)
			return nil, fmt.Errorf("%w (%v)", errQueueTimeout, ctx.Err())
		}
	}
	defer func() { <-q.slots }()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w (%v)", errQueueTimeout, err)
	}
	q.inFlight.Add(1)
	defer q.inFlight.Add(-1)
	return q.dev.RoundTrip(ctx, req)
}
