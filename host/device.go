package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/protocol"
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
	Kind     string // "soft", "unix", "serial", or the implementation's choice
	Address  string // where it is reached; never a secret
	Insecure bool   // known to be insecure without asking it (the in-process software vault)
	Connects uint64 // connections made so far
}

// ErrDisconnected is wrapped by RoundTrip errors meaning that the device is
// not connected or that its connection ended with the request in flight.
var ErrDisconnected = errors.New("host: vault device disconnected")

var deviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)

// SoftDevice is an in-process software vault. It is INSECURE: its keys are
// files on this host, which is exactly the machine the design does not
// trust. It is for development and tests.
type SoftDevice struct {
	name string
	dir  string
	v    *vault.Vault
	inst *softvault.Instance // set when the device opened the vault itself
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewSoftDevice serves v as a device. Close stops the device's expiry
// ticker but leaves v to its owner.
func NewSoftDevice(name string, v *vault.Vault) *SoftDevice {
	d := &SoftDevice{name: name, v: v, stop: make(chan struct{})}
	d.wg.Add(1)
	go d.expire()
	return d
}

// OpenSoftDevice opens (creating and self-provisioning it with a development
// provisioning key on first use, as `softvault dev` does) the software vault
// in dir. It logs, loudly, that the vault is insecure, and the development
// provisioning public key that clients must pin.
func OpenSoftDevice(ctx context.Context, name, dir string, log *slog.Logger) (*SoftDevice, error) {
	log.Warn("INSECURE: device is an in-process software vault; its keys are files on this untrusted host. For development and tests only",
		"device", name, "state", dir)
	pub, err := softvault.DevSetup(ctx, dir, protocol.DefaultLimit, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	log.Warn("INSECURE software vault provisioned with a development key kept beside it", "device", name,
		"provisioning_public_key", fmt.Sprintf("%x", pub))
	inst, err := softvault.Open(ctx, dir, softvault.Options{Log: log.With("device", name)})
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", name, err)
	}
	d := NewSoftDevice(name, inst.Vault)
	d.dir, d.inst = dir, inst
	return d, nil
}

func (d *SoftDevice) expire() {
	defer d.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.v.Expire()
		}
	}
}

func (d *SoftDevice) Name() string    { return d.name }
func (d *SoftDevice) Connected() bool { return true }

func (d *SoftDevice) Describe() DeviceInfo {
	return DeviceInfo{Kind: "soft", Address: d.dir, Insecure: true, Connects: 1}
}

func (d *SoftDevice) RoundTrip(ctx context.Context, request []byte) ([]byte, error) {
	return d.v.Handle(ctx, request), nil
}

// Close stops the device, and closes the vault if the device opened it.
func (d *SoftDevice) Close() error {
	var err error
	d.once.Do(func() {
		close(d.stop)
		d.wg.Wait()
		if d.inst != nil {
			err = d.inst.Close()
		}
	})
	return err
}

// Dialer opens a byte stream to a vault speaking the framing protocol.
type Dialer func(ctx context.Context) (io.ReadWriteCloser, error)

// UnixDialer dials a unix socket: the software vault (`softvault serve
// -listen unix:PATH`) or QEMU's UART (`-serial unix:PATH,server`).
func UnixDialer(path string) Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

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
	dial Dialer
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
func NewStreamDevice(name string, dial Dialer, opts StreamOptions) *StreamDevice {
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
		if dc, ok := conn.(deadliner); ok {
			conn = &writeDeadlineConn{ReadWriteCloser: conn, d: dc, timeout: d.opts.WriteTimeout}
		}
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

type deadliner interface{ SetWriteDeadline(time.Time) error }

// writeDeadlineConn bounds every write, so that a vault that stopped reading
// cannot hold a request (and the stream's write lock) past its timeout: the
// write fails, that request fails, and the vault's frame reader skips the
// partial frame.
type writeDeadlineConn struct {
	io.ReadWriteCloser
	d       deadliner
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	c.d.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.ReadWriteCloser.Write(p)
}
