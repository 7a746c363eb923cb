package host

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

// TestUnixDeviceSurvivesAVaultThatDies: the vault behind a unix socket dies
// with a login in flight and comes back (a reboot: its RAM state is gone).
// The request in flight fails cleanly with 503, requests meanwhile get 503
// at once, health and metrics say disconnected, and after the reconnect the
// same client logs in again, starting from KE1.
func TestUnixDeviceSurvivesAVaultThatDies(t *testing.T) {
	ctx := context.Background()
	inst, pub, dir := softVault(t)
	var vaultNow atomic.Pointer[softvault.Instance]
	vaultNow.Store(inst)
	var hold atomic.Bool
	held := make(chan struct{}, 1)
	var srvSock *streamServer
	handler := func(ctx context.Context, req []byte) []byte {
		if typ, _ := protocol.PeekType(req); typ == protocol.TypeLoginStart && hold.Load() {
			held <- struct{}{}
			<-srvSock.died() // never answered: the vault dies first
			return protocol.EncodeError(protocol.Errorf(protocol.CodeInternal, "dead"))
		}
		return vaultNow.Load().Vault.Handle(ctx, req)
	}
	srvSock = &streamServer{path: shortSocket(t), handler: handler}
	srvSock.start(t)
	t.Cleanup(srvSock.kill)

	dev := NewStreamDevice("uart", transport.UnixDialer(srvSock.path), StreamOptions{Kind: "unix", Address: srvSock.path,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Log: quiet})
	accounts, accts, tokens := testAccounts(t, "alice")
	srv, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, PollInterval: 50 * time.Millisecond})
	waitFor(t, "the device to connect", dev.Connected)

	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, []byte("pw"), make([]byte, 32), 10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.Login(ctx, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the status poll", func() bool {
		return testutilGauge(t, srv, "cofferd_anchor_writes", map[string]string{"device": "uart"}) > 0
	})

	// A login in flight when the vault dies.
	hold.Store(true)
	inflight := make(chan error, 1)
	go func() { _, _, err := alice.Login(ctx, []byte("pw")); inflight <- err }()
	<-held
	srvSock.kill()
	err := <-inflight
	var he *httpError
	if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" {
		t.Fatalf("login in flight when the vault died: %v", err)
	}
	waitFor(t, "the device to be marked disconnected", func() bool { return !dev.Connected() })

	// While it is down: 503 at once, health and metrics say so.
	if _, _, err := alice.Login(ctx, []byte("pw")); statusOf(err) != 503 {
		t.Fatalf("login while the vault is down: %v", err)
	}
	resp, b := get(t, hs.URL+"/healthz", "")
	var h Health
	json.Unmarshal(b, &h)
	if resp.StatusCode != 503 || h.Devices["uart"].Connected {
		t.Fatalf("healthz while down: %d %s", resp.StatusCode, b)
	}
	if got := testutilGauge(t, srv, "cofferd_device_connected", map[string]string{"device": "uart"}); got != 0 {
		t.Fatalf("cofferd_device_connected while down = %v", got)
	}

	// Reboot: the vault reopens its store and forgets its RAM state.
	inst.Close()
	inst2, err := softvault.Open(ctx, dir, softvault.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst2.Close() })
	vaultNow.Store(inst2)
	hold.Store(false)
	srvSock.start(t)
	waitFor(t, "the device to reconnect", dev.Connected)

	s, r, err := alice.Login(ctx, []byte("pw"))
	if err != nil {
		t.Fatalf("login after the reboot: %v", err)
	}
	// The attempt whose reply was lost was counted by the vault before
	// it died (or not); either way the client learns it from the receipt.
	if r.FailedSinceSuccess > 1 {
		t.Fatalf("failed since success %d after one lost login", r.FailedSinceSuccess)
	}
	if _, _, err := s.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutilGauge(t, srv, "cofferd_device_connected", map[string]string{"device": "uart"}); got != 1 {
		t.Fatalf("cofferd_device_connected after reconnect = %v", got)
	}
	if got := testutilCounter(t, srv, "cofferd_device_failures_total", map[string]string{"device": "uart", "reason": "disconnected"}); got < 2 {
		t.Fatalf("disconnected failures = %v, want ≥ 2", got)
	}
	if c := dev.Describe().Connects; c != 2 {
		t.Fatalf("%d connections, want 2", c)
	}
}

// TestRealSoftvaultOverUnixSocket drives softvault.Serve, the software vault
// as its command serves it, through a unix device.
func TestRealSoftvaultOverUnixSocket(t *testing.T) {
	ctx := context.Background()
	sock := shortSocket(t)
	dir := t.TempDir()
	pub := softvaulttest.ServeDev(t, dir, sock)
	dev := NewStreamDevice("sv", transport.UnixDialer(sock), StreamOptions{MinBackoff: 10 * time.Millisecond, Log: quiet})
	accounts, accts, tokens := testAccounts(t, "alice")
	srv, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, PollInterval: 20 * time.Millisecond})
	waitFor(t, "the device to connect", dev.Connected)
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, []byte("pw"), make([]byte, 32), 5); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.Login(ctx, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	// The poller learned from the identity bundle that the vault is
	// insecure, and says so.
	waitFor(t, "the identity poll", func() bool { _, known := srv.devices[0].insecure(); return known })
	if h := srv.Health(); h.Devices["sv"].Insecure == nil || !*h.Devices["sv"].Insecure || len(h.Warnings) == 0 {
		t.Fatalf("health does not say insecure: %+v", h)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestStatusPollResetsAStreamThatStopsAnswering: a UART stays open while the
// firmware reboots; two unanswered status polls drop the connection, which
// fails the requests in flight at once (503) instead of at their timeouts.
func TestStatusPollResetsAStreamThatStopsAnswering(t *testing.T) {
	var mute atomic.Bool
	inst, _, _ := softVault(t)
	handler := func(ctx context.Context, req []byte) []byte {
		if mute.Load() {
			<-ctx.Done()
			return nil
		}
		return inst.Vault.Handle(ctx, req)
	}
	ss := &streamServer{path: shortSocket(t), handler: handler}
	ss.start(t)
	t.Cleanup(ss.kill)
	dev := NewStreamDevice("uart", transport.UnixDialer(ss.path), StreamOptions{MinBackoff: 10 * time.Millisecond, Log: quiet})
	accounts, _, tokens := testAccounts(t, "alice")
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, PollInterval: 10 * time.Millisecond, Timeout: 500 * time.Millisecond})
	waitFor(t, "the device to connect", dev.Connected)
	mute.Store(true)
	t0 := time.Now()
	_, err := post(context.Background(), http.DefaultClient, hs.URL, tokens["alice"], mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}))
	// The device's polls time out at 0.5 s each; the request would wait
	// 0.5 s too. Either the request times out (504) or, if the reset
	// came first, fails as disconnected (503); both within its timeout.
	if s := statusOf(err); s != 503 && s != 504 {
		t.Fatalf("request to a mute vault: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	waitFor(t, "a reconnection after the mute polls", func() bool { return dev.Describe().Connects >= 2 })
	mute.Store(false)
	waitFor(t, "the device to be connected", dev.Connected)
	if _, err := post(context.Background(), http.DefaultClient, hs.URL, tokens["alice"], mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})); err != nil {
		t.Fatal(err)
	}
}

// TestRefuseInsecure: with RefuseInsecure (cofferd without
// -allow-insecure-vault), a device whose identity bundle turns out to say
// insecure gets no more requests: they are answered 503 by cofferd itself,
// and Refused reports the device so that the daemon stops.
func TestRefuseInsecure(t *testing.T) {
	sock := shortSocket(t)
	softvaulttest.ServeDev(t, t.TempDir(), sock)
	// alice is on sv already: a refused device takes no new account.
	accounts := state.NewMemory()
	accts, tokens := addAccounts(t, accounts, "sv", "alice")
	login := loginStart(t, accts["alice"].UserID)
	dev := &requestCounter{Device: NewStreamDevice("sv", transport.UnixDialer(sock), StreamOptions{MinBackoff: 10 * time.Millisecond, Log: quiet}), req: login}
	srv, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, PollInterval: 20 * time.Millisecond, RefuseInsecure: true})
	var refused error
	select {
	case refused = <-srv.Refused():
	case <-time.After(10 * time.Second):
		t.Fatal("an insecure device was not refused")
	}
	if !strings.Contains(refused.Error(), "sv") || !strings.Contains(refused.Error(), "-allow-insecure-vault") {
		t.Fatalf("refusal: %v", refused)
	}
	_, err := post(context.Background(), hs.Client(), hs.URL, tokens["alice"], login)
	if statusOf(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "insecure") {
		t.Fatalf("a request to a refused device: %v", err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("%d login starts reached the refused device", n)
	}
}

// requestCounter counts the requests equal to req that reach a device.
type requestCounter struct {
	Device
	req   []byte
	calls atomic.Int64
}

func (d *requestCounter) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	if string(req) == string(d.req) {
		d.calls.Add(1)
	}
	return d.Device.RoundTrip(ctx, req)
}
