package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

// Device is one vault as cofferd sees it: something that answers encoded
// vault requests. Implementations must be safe for concurrent use; cofferd
// bounds how many requests it has in flight on each.
type Device interface {
	// Name is the device's name in the configuration, accounts, logs and
	// metrics.
	Name() string
	// RoundTrip sends one request and returns the vault's reply. It fails
	// with an error wrapping ErrDisconnected when the device is not
	// connected, or when the connection ended with the request in flight
	// (the vault may or may not have processed it).
	RoundTrip(ctx context.Context, request []byte) ([]byte, error)
	// Connected reports whether requests can be sent now.
	Connected() bool
	// Close disconnects for good; requests in flight fail.
	Close() error
}

// DeviceInfo describes a device for /healthz and logs. Devices may
// implement Describe() DeviceInfo; others are described by name only.
type DeviceInfo struct {
	Kind     string // "unix", "serial", or the implementation's choice
	Address  string // where it is reached; never a secret
	Insecure bool   // known to be insecure without asking it
	Connects uint64 // connections made so far
}

// ErrDisconnected is wrapped by RoundTrip errors meaning that the device is
// not connected or that its connection ended with the request in flight.
var ErrDisconnected = errors.New("host: vault device disconnected")

var deviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)

// StreamOptions tune a StreamDevice. Zero values take the defaults shown.
type StreamOptions struct {
	Kind, Address string        // for DeviceInfo
	MinBackoff    time.Duration // first wait before redialling: 100 ms
	MaxBackoff    time.Duration // longest wait between dials: 5 s
	DialTimeout   time.Duration // 5 s
	WriteTimeout  time.Duration // 5 s, for connections with write deadlines (sockets)
	Log           *slog.Logger  // slog.Default()
}

// StreamDevice is a vault behind a framed byte stream (unix socket, serial
// port). Many requests share the one stream (protocol.StreamClient matches
// replies by id). When the stream ends, requests in flight fail with
// ErrDisconnected and the device redials with exponential backoff and
// jitter until Close.
type StreamDevice struct {
	name string
	dial transport.Dialer
	opts StreamOptions

	mu       sync.Mutex
	client   *protocol.StreamClient
	connects atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// NewStreamDevice starts connecting to the vault behind dial, in the
// background.
func NewStreamDevice(name string, dial transport.Dialer, opts StreamOptions) *StreamDevice {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	opts.Log = opts.Log.With("device", name)
	ctx, cancel := context.WithCancel(context.Background())
	d := &StreamDevice{name: name, dial: dial, opts: opts, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go d.run()
	return d
}

func (d *StreamDevice) Name() string { return d.name }

func (d *StreamDevice) Describe() DeviceInfo {
	return DeviceInfo{Kind: d.opts.Kind, Address: d.opts.Address, Connects: d.connects.Load()}
}

func (d *StreamDevice) current() *protocol.StreamClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client
}

func (d *StreamDevice) Connected() bool {
	c := d.current()
	if c == nil {
		return false
	}
	select {
	case <-c.Done():
		return false
	default:
		return true
	}
}

func (d *StreamDevice) RoundTrip(ctx context.Context, request []byte) ([]byte, error) {
	c := d.current()
	if c == nil {
		return nil, fmt.Errorf("%w: %s", ErrDisconnected, d.name)
	}
	reply, err := c.RoundTrip(ctx, request)
	if errors.Is(err, protocol.ErrStreamClosed) {
		return nil, fmt.Errorf("%w: %s: %v", ErrDisconnected, d.name, err)
	}
	return reply, err
}

// Reset drops the current connection (requests in flight fail with
// ErrDisconnected) and reconnects. cofferd calls it when the vault stops
// answering on a stream that stays open, as a UART does while the firmware
// reboots.
func (d *StreamDevice) Reset() {
	if c := d.current(); c != nil {
		c.Close()
	}
}

// Close stops reconnecting and closes the connection.
func (d *StreamDevice) Close() error {
	d.cancel()
	<-d.done
	return nil
}

func (d *StreamDevice) run() {
	defer close(d.done)
	backoff := d.opts.MinBackoff
	failures := 0
	for {
		dctx, cancel := context.WithTimeout(d.ctx, d.opts.DialTimeout)
		conn, err := d.dial(dctx)
		cancel()
		if d.ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return
		}
		if err != nil {
			failures++
			// Say it on the first failure and then now and again, not on
			// every attempt of a long outage.
			if failures == 1 || failures%30 == 0 {
				d.opts.Log.Warn("cannot connect to vault device", "address", d.opts.Address, "attempts", failures, "err", err)
			}
			if !d.sleep(jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, d.opts.MaxBackoff)
			continue
		}
		conn = transport.WithWriteDeadline(conn, d.opts.WriteTimeout)
		c := protocol.NewStreamClient(conn)
		d.mu.Lock()
		d.client = c
		d.mu.Unlock()
		n := d.connects.Add(1)
		d.opts.Log.Info("vault device connected", "address", d.opts.Address, "connection", n, "after_failures", failures)
		failures, backoff = 0, d.opts.MinBackoff
		select {
		case <-c.Done():
		case <-d.ctx.Done():
		}
		d.mu.Lock()
		d.client = nil
		d.mu.Unlock()
		c.Close()
		if d.ctx.Err() != nil {
			return
		}
		d.opts.Log.Warn("vault device disconnected; requests in flight failed; reconnecting", "address", d.opts.Address)
		if !d.sleep(jitter(d.opts.MinBackoff)) {
			return
		}
	}
}

func (d *StreamDevice) sleep(t time.Duration) bool {
	timer := time.NewTimer(t)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-d.ctx.Done():
		return false
	}
}

// jitter spreads t over [t/2, t) so that hosts do not redial in step.
func jitter(t time.Duration) time.Duration {
	if t <= 1 {
		return t
	}
	return t/2 + rand.N(t/2)
}
