package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// softVault creates and self-provisions a software vault in a temporary
// folder and opens it in this process.
func softVault(t testing.TB) (*softvault.Instance, ed25519.PublicKey, string) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	pub, err := softvault.DevSetup(ctx, dir, 10, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := softvault.Open(ctx, dir, softvault.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst, pub, dir
}

// testAccounts makes a state store with the named accounts, on no device
// yet (their first request places them), and returns it with the accounts
// and their tokens by name.
func testAccounts(t testing.TB, names ...string) (state.Store, map[string]Account, map[string]string) {
	t.Helper()
	st := state.NewMemory()
	accts, tokens := addAccounts(t, st, "", names...)
	return st, accts, tokens
}

// addAccounts adds the named accounts to st, placed on device ("": none),
// registering device on the host "local" first if it is not registered.
func addAccounts(t testing.TB, st state.Store, device string, names ...string) (map[string]Account, map[string]string) {
	t.Helper()
	ctx := context.Background()
	if device != "" {
		if _, err := st.Device(ctx, device); errors.Is(err, state.ErrNotFound) {
			if err := st.RegisterDevice(ctx, device, "local"); err != nil {
				t.Fatal(err)
			}
		}
	}
	accts, tokens := map[string]Account{}, map[string]string{}
	for _, n := range names {
		a, tok, err := NewAccount(ctx, st, n, device)
		if err != nil {
			t.Fatal(err)
		}
		accts[n], tokens[n] = a, tok
	}
	return accts, tokens
}

// reportHealthy says in the server's store that its devices are healthy
// now (by its clock), as its poller would: servers of tests that do not
// poll place accounts on them all the same.
func reportHealthy(t testing.TB, s *Server) {
	t.Helper()
	for _, q := range s.devices {
		if err := s.cfg.Store.ReportDevice(context.Background(), q.dev.Name(), state.Report{Healthy: true, Seen: s.cfg.Now()}); err != nil {
			t.Fatal(err)
		}
	}
}

// testServer runs cofferd's handler on loopback. Its devices are reported
// healthy once, at start, as if polled (a poller, if any, reports what it
// finds from then on), and the accounts of its store that are on no device
// are placed on the first one, as a one-device cofferd would place them
// (realm_test.go tests placement itself, with hosts of its own).
func testServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = quiet
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = -1
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reportHealthy(t, s)
	ctx := context.Background()
	accts, err := cfg.Store.ListAccounts(ctx, "", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accts {
		if a.Device == "" {
			if _, err := cfg.Store.Place(ctx, a.Name, cfg.Devices[0].Name()); err != nil {
				t.Fatal(err)
			}
		}
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs
}

// httpError is a non-200 answer from cofferd.
type httpError struct {
	status     int
	retryAfter string
	body       string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("HTTP %d (Retry-After %q): %s", e.status, e.retryAfter, e.body)
}

func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

// post sends one vault request to cofferd.
func post(ctx context.Context, client *http.Client, url, token string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/vault", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/cbor")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/cbor" {
		return nil, fmt.Errorf("reply of type %q", ct)
	}
	return b, nil
}

// via returns a testclient round trip that POSTs to cofferd.
func via(url, token string) testclient.RoundTrip {
	return func(ctx context.Context, request []byte) ([]byte, error) {
		return post(ctx, http.DefaultClient, url, token, request)
	}
}

func get(t testing.TB, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// userClient is a test client for an account, through cofferd.
func userClient(t testing.TB, url, token string, a Account, pub ed25519.PublicKey) *testclient.Client {
	t.Helper()
	rt := via(url, token)
	id, err := testclient.FetchIdentity(context.Background(), rt, pub)
	if err != nil {
		t.Fatal(err)
	}
	return &testclient.Client{RoundTrip: rt, Identity: id, UserID: a.UserID}
}

func mustEncode(t testing.TB, typ protocol.Type, m protocol.Message) []byte {
	t.Helper()
	b, err := protocol.Encode(typ, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loginStart(t testing.TB, userID []byte) []byte {
	return mustEncode(t, protocol.TypeLoginStart, &protocol.LoginStart{UserID: userID, KE1: make([]byte, protocol.KE1Size)})
}

// stubDevice answers every request with an error reply, optionally after
// waiting at a gate, and counts what it is sent.
type stubDevice struct {
	name      string
	connected atomic.Bool
	gate      chan struct{} // if not nil, each request waits for a value (or its context)
	entered   chan struct{} // if not nil, told of each request as it arrives
	ignoreCtx bool          // wait at the gate even after the request's context ends
	calls     atomic.Int64
	closed    atomic.Bool
}

func newStub(name string) *stubDevice {
	d := &stubDevice{name: name}
	d.connected.Store(true)
	return d
}

func (d *stubDevice) Name() string    { return d.name }
func (d *stubDevice) Connected() bool { return d.connected.Load() }
func (d *stubDevice) Close() error    { d.closed.Store(true); return nil }

func (d *stubDevice) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	d.calls.Add(1)
	if d.entered != nil {
		d.entered <- struct{}{}
	}
	if d.gate != nil && d.ignoreCtx {
		<-d.gate
	} else if d.gate != nil {
		select {
		case <-d.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return protocol.EncodeError(protocol.Errorf(protocol.CodeUnknownHandle, "stub")), nil
}

// countingDevice counts requests reaching a device.
type countingDevice struct {
	Device
	calls atomic.Int64
}

func (d *countingDevice) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	d.calls.Add(1)
	return d.Device.RoundTrip(ctx, req)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamServer serves a vault handler over the framing protocol on a unix
// socket, and can be killed (listener and connections closed at once, as a
// crashing process or an unplugged device would) and started again.
type streamServer struct {
	path    string
	handler protocol.Handler

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	cancel context.CancelFunc
	dead   chan struct{} // closed by kill once the connections are gone
	wg     sync.WaitGroup
}

// died returns a channel closed when the server is killed, after its
// connections are closed: a handler blocked on it never gets its reply out.
func (s *streamServer) died() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

func (s *streamServer) start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.ln, s.cancel, s.conns, s.dead = ln, cancel, map[net.Conn]struct{}{}, make(chan struct{})
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				protocol.ServeStream(ctx, c, s.handler, 64)
				c.Close()
			}()
		}
	}()
}

func (s *streamServer) kill() {
	s.mu.Lock()
	if s.ln == nil {
		s.mu.Unlock()
		return
	}
	s.ln.Close()
	s.ln = nil
	for c := range s.conns {
		c.Close()
	}
	s.cancel()
	close(s.dead)
	s.mu.Unlock()
	s.wg.Wait()
}

// recordingConn keeps every byte read from and written to a connection.
type recordingConn struct {
	io.ReadWriteCloser
	rec *recording
}

type recording struct {
	mu       sync.Mutex
	sent     bytes.Buffer // cofferd → vault
	received bytes.Buffer // vault → cofferd
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	c.rec.mu.Lock()
	c.rec.received.Write(p[:n])
	c.rec.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.rec.mu.Lock()
	c.rec.sent.Write(p)
	c.rec.mu.Unlock()
	return c.ReadWriteCloser.Write(p)
}

func (r *recording) bytes() (sent, received []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.sent.Bytes()), bytes.Clone(r.received.Bytes())
}

func recordingDialer(d transport.Dialer, rec *recording) transport.Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		c, err := d(ctx)
		if err != nil {
			return nil, err
		}
		return &recordingConn{ReadWriteCloser: c, rec: rec}, nil
	}
}

func shortSocket(t testing.TB) string {
	t.Helper()
	// unix socket paths are limited to about 100 bytes; t.TempDir() can be
	// longer.
	dir, err := os.MkdirTemp("", "cofferd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "v.sock")
}

func hasAny(haystack []byte, needles map[string][]byte) []string {
	var found []string
	for name, n := range needles {
		if len(n) > 0 && bytes.Contains(haystack, n) {
			found = append(found, name)
		}
	}
	return found
}

func containsAll(s string, subs ...string) (missing []string) {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			missing = append(missing, sub)
		}
	}
	return missing
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
