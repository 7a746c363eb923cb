package host

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// testRealm is several cofferd hosts in this process sharing one state
// store, each with its public API on plain HTTP and its peer listener on
// mutual TLS from the realm's peer CA.
type testRealm struct {
	t     testing.TB
	st    state.Store
	ca    *x509.Certificate
	caKey crypto.Signer
	pool  *x509.CertPool
	hosts map[string]*testHost
}

type testHost struct {
	name string
	srv  *Server
	api  *httptest.Server
	peer *httptest.Server
	cert tls.Certificate
}

func newTestRealm(t testing.TB) *testRealm {
	t.Helper()
	ca, key, err := newPeerCA("test realm CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testRealm{t: t, st: state.NewMemory(), ca: ca, caKey: key, pool: pool, hosts: map[string]*testHost{}}
}

func (r *testRealm) cert(name string) tls.Certificate {
	r.t.Helper()
	c, err := issuePeerCert(r.ca, r.caKey, name, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// peerCert issues a certificate for a host that is registered but runs no
// Server here (the tests play it), and registers it with its key.
func (r *testRealm) peerCert(name string) tls.Certificate {
	r.t.Helper()
	c := r.cert(name)
	if err := r.st.RegisterHost(context.Background(), state.Host{Name: name, Seen: time.Now(), Instance: "test-" + name, PeerKey: PeerKeyHash(c.Leaf)}, time.Minute); err != nil {
		r.t.Fatal(err)
	}
	return c
}

// addHost starts a host with devices; cfg may set more (its Store, when
// set, is the host's view of the shared one).
func (r *testRealm) addHost(name string, cfg Config, devices ...Device) *testHost {
	t := r.t
	t.Helper()
	h := &testHost{name: name, cert: r.cert(name)}
	var handler atomic.Pointer[http.Handler]
	h.peer = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		(*handler.Load()).ServeHTTP(w, req)
	}))
	peerCfg := PeerConfig{Cert: &h.cert, CA: r.pool}
	tc, err := peerCfg.PeerServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	h.peer.TLS = tc
	h.peer.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.peer.StartTLS()
	peerCfg.URL = h.peer.URL
	cfg.Devices, cfg.HostName, cfg.Peer = devices, name, peerCfg
	if cfg.Store == nil {
		cfg.Store = r.st
	}
	if cfg.Log == nil {
		cfg.Log = quiet
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = -1
	}
	h.srv, err = New(cfg)
	if err != nil {
		h.peer.Close()
		t.Fatal(err)
	}
	if cfg.PollInterval < 0 {
		reportHealthy(t, h.srv)
	}
	ph := h.srv.PeerHandler()
	handler.Store(&ph)
	h.api = httptest.NewServer(h.srv.Handler())
	t.Cleanup(h.kill)
	r.hosts[name] = h
	return h
}

// registered returns a host's registry entry.
func (r *testRealm) registered(name string) state.Host {
	r.t.Helper()
	hs, err := r.st.Hosts(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, h := range hs {
		if h.Name == name {
			return h
		}
	}
	r.t.Fatalf("host %s is not registered", name)
	return state.Host{}
}

// kill stops the host at once: its listeners and its devices.
func (h *testHost) kill() {
	h.api.CloseClientConnections()
	h.api.Close()
	h.peer.CloseClientConnections()
	h.peer.Close()
	h.srv.Close()
}

// account adds accounts placed on device.
func (r *testRealm) account(device string, names ...string) (map[string]Account, map[string]string) {
	r.t.Helper()
	return addAccounts(r.t, r.st, device, names...)
}

// identity posts an identity request for token at host h.
func identityAt(t *testing.T, h *testHost, token string) error {
	t.Helper()
	_, err := post(context.Background(), http.DefaultClient, h.api.URL, token, mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}))
	return err
}

// peerClient is a client of peer listeners holding cert (which the server
// is not asked to prove anything about: the tests play the client).
func peerClient(cert tls.Certificate, pool *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
	}}}
}

func peerRequest(t *testing.T, st state.Store, c *http.Client, url, from, account string, body []byte) (int, string, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/vault", bytes.NewReader(body))
	if a, err := st.AccountByName(context.Background(), account); err == nil {
		req.Header.Set(peerUserHeader, hex.EncodeToString(a.UserID))
	}
	req.Header.Set("Content-Type", "application/cbor")
	req.Header.Set(peerHostHeader, from)
	req.Header.Set(peerAccountHeader, account)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// A user on one host's software vault registers and logs in through
// another host, whose forward is invisible but for the metrics: the same
// bytes, the same receipts, the key released.
func TestForwardedLogin(t *testing.T) {
	r := newTestRealm(t)
	inst, pub, _ := softVault(t)
	r.addHost("h1", Config{}, NewSoftDevice("soft1", inst.Vault))
	h2 := r.addHost("h2", Config{}, newStub("stub2"))
	accts, tokens := r.account("soft1", "alice")
	alice := userClient(t, h2.api.URL, tokens["alice"], accts["alice"], pub)
	registerLoginRelease(t, alice, "h2")
	resp, b := get(t, h2.api.URL+"/v1/account", tokens["alice"])
	var info AccountInfo
	if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil || info.Device != "soft1" || info.UserID != hex.EncodeToString(accts["alice"].UserID) {
		t.Fatalf("GET /v1/account at h2: %d %s", resp.StatusCode, b)
	}
	if n := testutilCounter(t, h2.srv, "cofferd_forwarded_requests_total", map[string]string{"peer": "h1", "code": "200"}); n < 5 {
		t.Fatalf("forwarded to h1: %v", n)
	}
}

// registerLoginRelease registers a user with a key, logs in and checks that
// the key comes back (through where, for the messages).
func registerLoginRelease(t *testing.T, user *testclient.Client, where string) {
	t.Helper()
	key := bytes.Repeat([]byte{0x4b}, 32)
	if _, err := user.Register(context.Background(), []byte("correct horse"), key, 3); err != nil {
		t.Fatalf("register through %s: %v", where, err)
	}
	s, _, err := user.Login(context.Background(), []byte("correct horse"))
	if err != nil {
		t.Fatalf("login through %s: %v", where, err)
	}
	got, _, err := s.Release(context.Background())
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("release through %s: %v", where, err)
	}
}

// Mallory holds a valid token for her own account and names Bob's in the
// header a peer uses: the public API never reads it, so she reaches only
// her own account.
func TestPublicAPIIgnoresPeerAccountHeader(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	accts, tokens := r.account("a", "mallory", "bob")
	for _, path := range []string{"/v1/account", "/v1/vault"} {
		req, _ := http.NewRequest(http.MethodGet, h1.api.URL+path, nil)
		if path == "/v1/vault" {
			// bob's user id in a login start: refused as another account's.
			req, _ = http.NewRequest(http.MethodPost, h1.api.URL+path, bytes.NewReader(loginStart(t, accts["bob"].UserID)))
		}
		req.Header.Set("Authorization", "Bearer "+tokens["mallory"])
		req.Header.Set(peerAccountHeader, "bob")
		req.Header.Set(peerHostHeader, "h1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch path {
		case "/v1/account":
			var info AccountInfo
			if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil || info.UserID != hex.EncodeToString(accts["mallory"].UserID) {
				t.Fatalf("GET /v1/account with %s: bob: %d %s", peerAccountHeader, resp.StatusCode, b)
			}
		default:
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("bob's login start with mallory's token and %s: bob: %d %s", peerAccountHeader, resp.StatusCode, b)
			}
		}
	}
	// Without a token, the header alone is nothing.
	req, _ := http.NewRequest(http.MethodGet, h1.api.URL+"/v1/account", nil)
	req.Header.Set(peerAccountHeader, "bob")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("header without a token: %d", resp.StatusCode)
	}
}

// The peer listener serves only peers of the realm's CA, each as the host
// its certificate names.
func TestPeerListenerAuthenticatesPeers(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	r.account("a", "bob")
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	dev := h1.srv.byName["a"].dev.(*stubDevice)

	// A certificate from another CA: no TLS connection at all.
	other := newTestRealm(t)
	if _, _, err := peerRequest(t, r.st, peerClient(other.cert("h2"), r.pool), h1.peer.URL, "h2", "bob", body); err == nil {
		t.Fatal("a peer certificate from another CA was accepted")
	}
	// No certificate: refused too.
	if _, _, err := peerRequest(t, r.st, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, h1.peer.URL, "h2", "bob", body); err == nil {
		t.Fatal("a peer without a certificate was accepted")
	}
	h2 := r.peerCert("h2")
	// A certificate naming h2 that says it is h3.
	code, msg, err := peerRequest(t, r.st, peerClient(h2, r.pool), h1.peer.URL, "h3", "bob", body)
	if err != nil || code != http.StatusForbidden || !strings.Contains(msg, `names host \"h2\"`) {
		t.Fatalf("h2 asking as h3: %d %s %v", code, msg, err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("refused peers reached the device %d times", n)
	}
	// The same peer as itself is served.
	if code, msg, err := peerRequest(t, r.st, peerClient(h2, r.pool), h1.peer.URL, "h2", "bob", body); err != nil || code != 200 {
		t.Fatalf("h2 as h2: %d %s %v", code, msg, err)
	}
	// The public API is not a peer listener: the peer header there needs a
	// token (above); the peer listener is no public API either.
	resp, err := peerClient(h2, r.pool).Get(h1.peer.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the peer listener: %d", resp.StatusCode)
	}
}

// A host dialling a peer checks that the certificate names the host it
// meant: a registry entry pointing h2's URL at h3's listener (a tampered
// store, or DNS) gets no request through to h3.
func TestForwardChecksThePeerName(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	r.addHost("h2", Config{}, newStub("b"))
	h3 := r.addHost("h3", Config{}, newStub("c"))
	_, tokens := r.account("b", "bob")
	h2 := r.registered("h2")
	h2.PeerURL, h2.Seen = h3.peer.URL, time.Now()
	if err := r.st.RegisterHost(context.Background(), h2, time.Minute); err != nil {
		t.Fatal(err)
	}
	err := identityAt(t, h1, tokens["bob"])
	var he *httpError
	if !errors.As(err, &he) || he.status != http.StatusServiceUnavailable || !strings.Contains(he.body, "h2") || he.retryAfter == "" {
		t.Fatalf("bob through a misdirected peer URL: %v", err)
	}
	if n := h3.srv.byName["c"].dev.(*stubDevice).calls.Load(); n != 0 {
		t.Fatalf("h3 was sent %d requests", n)
	}
}

// A forwarded request is never forwarded again: a peer that does not hold
// the account's device answers 502, and the host that does hears nothing.
func TestForwardedRequestIsNotForwardedAgain(t *testing.T) {
	r := newTestRealm(t)
	r.addHost("h1", Config{}, newStub("a"))
	h2 := r.addHost("h2", Config{}, newStub("b"))
	h3 := r.addHost("h3", Config{}, newStub("c"))
	r.account("c", "carol")
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	code, msg, err := peerRequest(t, r.st, peerClient(r.hosts["h1"].cert, r.pool), h2.peer.URL, "h1", "carol", body)
	if err != nil || code != http.StatusBadGateway || !strings.Contains(msg, "not forwarded again") {
		t.Fatalf("carol forwarded to h2: %d %s %v", code, msg, err)
	}
	if n := h3.srv.byName["c"].dev.(*stubDevice).calls.Load(); n != 0 {
		t.Fatalf("h2 forwarded it on: h3's device got %d requests", n)
	}
	if n := testutilCounter(t, h2.srv, "cofferd_forwarded_requests_total", map[string]string{"peer": "h3", "code": "200"}); n != 0 {
		t.Fatalf("h2 forwarded %v requests", n)
	}
	// An account on no device is not placed by a peer's forward either.
	r.account("", "newbie")
	code, msg, err = peerRequest(t, r.st, peerClient(r.hosts["h1"].cert, r.pool), h2.peer.URL, "h1", "newbie", body)
	if err != nil || code != http.StatusBadGateway {
		t.Fatalf("unplaced account forwarded: %d %s %v", code, msg, err)
	}
	if a, _ := r.st.AccountByName(context.Background(), "newbie"); a.Device != "" {
		t.Fatalf("a forwarded request placed newbie on %s", a.Device)
	}
}

// New accounts land only on active, healthy, freshly seen devices with
// room, whatever the receiving host; when none is left, a clear 503.
func TestPlacementAvoidsUnfitDevices(t *testing.T) {
	r := newTestRealm(t)
	ctx := context.Background()
	devs := map[string]*stubDevice{}
	for _, n := range []string{"a-draining", "b-retired", "c-unhealthy", "d-stale", "e-full", "f-good"} {
		devs[n] = newStub(n)
	}
	h1 := r.addHost("h1", Config{}, devs["a-draining"], devs["b-retired"], devs["c-unhealthy"])
	h2 := r.addHost("h2", Config{}, devs["d-stale"], devs["e-full"], devs["f-good"])
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.st.SetDeviceState(ctx, "a-draining", state.Draining))
	must(r.st.SetDeviceState(ctx, "b-retired", state.Retired))
	must(r.st.ReportDevice(ctx, "c-unhealthy", state.Report{Seen: time.Now()}))
	must(r.st.ReportDevice(ctx, "d-stale", state.Report{Healthy: true, Seen: time.Now().Add(-time.Hour)}))
	must(r.st.SetDeviceLimits(ctx, "e-full", 1, 0))
	r.account("e-full", "first")
	names := []string{"u1", "u2", "u3", "u4", "u5", "u6"}
	_, tokens := r.account("", names...)
	for i, n := range names {
		h := h1
		if i%2 == 1 {
			h = h2
		}
		if err := identityAt(t, h, tokens[n]); err != nil {
			t.Fatalf("%s at %s: %v", n, h.name, err)
		}
		if a, _ := r.st.AccountByName(ctx, n); a.Device != "f-good" {
			t.Fatalf("%s placed on %q", n, a.Device)
		}
	}
	for n, d := range devs {
		if want := int64(0); n != "f-good" && d.calls.Load() != want {
			t.Fatalf("%s got %d requests", n, d.calls.Load())
		}
	}
	// The last fit device drained: a newcomer gets a clear 503.
	must(r.st.SetDeviceState(ctx, "f-good", state.Draining))
	time.Sleep(registryCacheTTL)
	_, late := r.account("", "late")
	err := identityAt(t, h1, late["late"])
	var he *httpError
	if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" || !strings.Contains(he.body, "can take a new account") {
		t.Fatalf("no device left: %v", err)
	}
	// Those placed on f-good are still served there.
	if err := identityAt(t, h2, tokens["u1"]); err != nil {
		t.Fatalf("u1 on the drained f-good: %v", err)
	}
}

// A device that fails makes only its users unavailable: 503 with a reason
// and Retry-After; a retired one says so; everyone else is served.
func TestDeviceDownOnlyItsUsers(t *testing.T) {
	r := newTestRealm(t)
	a, b := newStub("a"), newStub("b")
	h1 := r.addHost("h1", Config{}, a, b)
	h2 := r.addHost("h2", Config{}, newStub("c"))
	_, ta := r.account("a", "on-a")
	_, tb := r.account("b", "on-b")
	b.connected.Store(false)
	for _, h := range []*testHost{h1, h2} {
		if err := identityAt(t, h, ta["on-a"]); err != nil {
			t.Fatalf("on-a at %s: %v", h.name, err)
		}
		err := identityAt(t, h, tb["on-b"])
		var he *httpError
		if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" || !strings.Contains(he.body, "disconnected") {
			t.Fatalf("on-b at %s with b down: %v", h.name, err)
		}
	}
	// Retired (after its user was moved off it): the moved user is placed
	// again elsewhere, and a user still pinned to it is told.
	ctx := context.Background()
	if err := r.st.SetDeviceState(ctx, "b", state.Retired); !errors.Is(err, state.ErrDeviceState) {
		t.Fatalf("retired with an account on it: %v", err)
	}
	if err := r.st.Unplace(ctx, "on-b"); err != nil {
		t.Fatal(err)
	}
	if err := r.st.SetDeviceState(ctx, "b", state.Retired); err != nil {
		t.Fatal(err)
	}
	time.Sleep(authCacheTTL)
	if err := identityAt(t, h2, tb["on-b"]); err != nil {
		t.Fatalf("on-b after its move: %v", err)
	}
	if acct, _ := r.st.AccountByName(ctx, "on-b"); acct.Device == "b" || acct.Device == "" {
		t.Fatalf("on-b placed on %q", acct.Device)
	}
	// One pinned to a retired device (as a store restored from before the
	// move would say).
	ret := &retiredView{Store: r.st}
	h3 := r.addHost("h3", Config{Store: ret}, newStub("d"))
	_, td := r.account("d", "on-d")
	ret.retired.Store(true)
	err := identityAt(t, h3, td["on-d"])
	var he *httpError
	if !errors.As(err, &he) || he.status != 503 || !strings.Contains(he.body, "retired: ") || !strings.Contains(he.body, "re-register or repair through your realms") {
		t.Fatalf("user of a retired device: %v", err)
	}
}

// retiredView says every device is retired once retired is set.
type retiredView struct {
	state.Store
	retired atomic.Bool
}

func (v *retiredView) Device(ctx context.Context, name string) (state.Device, error) {
	d, err := v.Store.Device(ctx, name)
	if v.retired.Load() {
		d.State = state.Retired
	}
	return d, err
}

// A host that dies makes only the users of its devices unavailable, at
// every other host: 503 naming their host as unreachable, with
// Retry-After; /healthz names it.
func TestHostDownOnlyItsUsers(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	h2 := r.addHost("h2", Config{}, newStub("b"))
	h3 := r.addHost("h3", Config{}, newStub("c"))
	_, ta := r.account("a", "on-a")
	_, tb := r.account("b", "on-b")
	_, tc := r.account("c", "on-c")
	for _, h := range []*testHost{h1, h2, h3} {
		for _, tok := range []string{ta["on-a"], tb["on-b"], tc["on-c"]} {
			if err := identityAt(t, h, tok); err != nil {
				t.Fatalf("at %s before: %v", h.name, err)
			}
		}
	}
	h3.kill()
	for _, h := range []*testHost{h1, h2} {
		for _, tok := range []string{ta["on-a"], tb["on-b"]} {
			if err := identityAt(t, h, tok); err != nil {
				t.Fatalf("at %s with h3 down: %v", h.name, err)
			}
		}
		err := identityAt(t, h, tc["on-c"])
		var he *httpError
		if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" || !strings.Contains(he.body, "h3") || !strings.Contains(he.body, "unreachable") {
			t.Fatalf("on-c at %s with h3 down: %v", h.name, err)
		}
	}
	health := h1.srv.Health()
	if p, ok := health.Peers["h3"]; !ok || p.Reachable || health.Status != "degraded" || health.Realm["c"].Host != "h3" || health.Realm["a"].Host != "h1" {
		t.Fatalf("h1's health with h3 down: %+v", health)
	}
	if p := health.Peers["h2"]; !p.Reachable {
		t.Fatalf("h2 shown unreachable: %+v", p)
	}
	if n := testutilCounter(t, h1.srv, "cofferd_forwarded_requests_total", map[string]string{"peer": "h3", "code": "unreachable"}); n != 1 {
		t.Fatalf("unreachable forwards to h3 counted %v", n)
	}
}

// placementView hides a device from Devices and every account's placement
// from AccountByToken, as a host whose view of the store is older than
// another's would see them.
type placementView struct {
	state.Store
	hide string
}

func (v *placementView) AccountByToken(ctx context.Context, sum [32]byte) (Account, error) {
	a, err := v.Store.AccountByToken(ctx, sum)
	a.Device = ""
	return a, err
}

func (v *placementView) Devices(ctx context.Context) ([]state.Device, error) {
	ds, err := v.Store.Devices(ctx)
	out := ds[:0:0]
	for _, d := range ds {
		if d.Name != v.hide {
			out = append(out, d)
		}
	}
	return out, err
}

// Two hosts placing one user at once: the user is placed once, and both
// hosts send it to the device Place said, not to the one each chose.
func TestConcurrentFirstRequestsPlaceOnce(t *testing.T) {
	r := newTestRealm(t)
	a, b := newStub("a"), newStub("b")
	h1 := r.addHost("h1", Config{}, a)
	// h2 does not see a, nor where accounts are: it would place them on b.
	h2 := r.addHost("h2", Config{Store: &placementView{Store: r.st, hide: "a"}}, b)
	_, tokens := r.account("", "first", "racer")
	if err := identityAt(t, h1, tokens["first"]); err != nil {
		t.Fatal(err)
	}
	if err := identityAt(t, h2, tokens["first"]); err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() != 2 || b.calls.Load() != 0 {
		t.Fatalf("first's requests: a %d, b %d (both must reach a, where h1 placed it)", a.calls.Load(), b.calls.Load())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := h1
			if i%2 == 1 {
				h = h2
			}
			errs <- identityAt(t, h, tokens["racer"])
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	acct, _ := r.st.AccountByName(context.Background(), "racer")
	da, _ := r.st.Device(context.Background(), "a")
	db, _ := r.st.Device(context.Background(), "b")
	if da.Accounts+db.Accounts != 2 {
		t.Fatalf("accounts counted: a %d, b %d", da.Accounts, db.Accounts)
	}
	other := b
	if acct.Device == "b" {
		other = a
	}
	if other == a && a.calls.Load() != 2 || other == b && b.calls.Load() != 0 {
		t.Fatalf("racer (on %s) reached the other device: a %d, b %d", acct.Device, a.calls.Load(), b.calls.Load())
	}
}

// The login rate limit is the realm's, not a host's: a burst spent half
// at each host leaves nothing, and a restarted home host refills nothing.
func TestRateLimitAcrossHosts(t *testing.T) {
	r := newTestRealm(t)
	clock := time.Now()
	cfg := Config{LoginRate: DefaultLoginRate, LoginBurst: 4, Now: func() time.Time { return clock }}
	var h1Log syncbuf.Buffer
	cfg1 := cfg
	cfg1.Log = slogTo(&h1Log)
	h1 := r.addHost("h1", cfg1, newStub("a"))
	h2 := r.addHost("h2", cfg, newStub("b"))
	accts, tokens := r.account("a", "alice")
	login := loginStart(t, accts["alice"].UserID)
	ctx := context.Background()
	for i, h := range []*testHost{h1, h2, h1, h2} {
		if _, err := post(ctx, http.DefaultClient, h.api.URL, tokens["alice"], login); err != nil {
			t.Fatalf("login start %d at %s: %v", i, h.name, err)
		}
	}
	for _, h := range []*testHost{h2, h1} {
		if _, err := post(ctx, http.DefaultClient, h.api.URL, tokens["alice"], login); statusOf(err) != http.StatusTooManyRequests {
			t.Fatalf("fifth login start at %s: %v", h.name, err)
		}
	}
	// The home host's event names the client, through the host it came in at.
	if !strings.Contains(h1Log.String(), "request rate-limited") || !strings.Contains(h1Log.String(), "via h2") {
		t.Fatalf("h1's log:\n%s", h1Log.String())
	}
	if ok, _, _ := r.st.Take(ctx, "login/alice", DefaultLoginRate, 4, clock); ok {
		t.Fatal("the bucket is not in the shared store")
	}
	h1.kill()
	r.addHost("h1", cfg, newStub("a"))
	time.Sleep(registryCacheTTL) // h2 sees h1's new peer URL
	if _, err := post(ctx, http.DefaultClient, h2.api.URL, tokens["alice"], login); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("after h1 restarted: %v", err)
	}
}

// A device name is the realm's: a host cannot register one that another
// host holds.
func TestDeviceNameTakenByAnotherHost(t *testing.T) {
	r := newTestRealm(t)
	r.addHost("h1", Config{}, newStub("a"))
	_, err := New(Config{Devices: []Device{newStub("a")}, Store: r.st, HostName: "h2", Log: quiet, PollInterval: -1})
	if err == nil || !strings.Contains(err.Error(), `"h1"`) || !strings.Contains(err.Error(), "unique across the realm") {
		t.Fatalf("a second host with device a: %v", err)
	}
	// The failed start signed off: h2 starts again at once with its device
	// renamed, not refused as held by another running cofferd.
	s, err := New(Config{Devices: []Device{newStub("b")}, Store: r.st, HostName: "h2", Log: quiet, PollInterval: -1})
	if err != nil {
		t.Fatalf("h2 started again with device b: %v", err)
	}
	s.Close()
}

// FuzzPeerHandler plays a peer of the realm's CA (its certificate verified,
// naming h2) sending any account name, host claim, user id, path and body: the peer
// listener never panics, and serves a request only for an account that
// exists, from a caller whose claim is its certificate's name, on a path a
// peer may forward to; a client token in the request changes nothing.
func FuzzPeerHandler(f *testing.F) {
	r := &testRealm{st: state.NewMemory(), hosts: map[string]*testHost{}}
	ca, key, err := newPeerCA("fuzz CA", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	cert, err := issuePeerCert(ca, key, "h2", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	if err := r.st.RegisterHost(context.Background(), state.Host{Name: "h2", Seen: time.Now(), PeerKey: PeerKeyHash(cert.Leaf)}, time.Minute); err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Devices: []Device{newStub("a")}, Store: r.st, HostName: "h1", Log: quiet, PollInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if err := r.st.RegisterDevice(ctx, "b", "h3"); err != nil {
		f.Fatal(err)
	}
	users := map[string]string{}
	for name, dev := range map[string]string{"alice": "a", "carol": "b"} {
		a, _, err := NewAccount(ctx, r.st, name, dev)
		if err != nil {
			f.Fatal(err)
		}
		users[name] = hex.EncodeToString(a.UserID)
	}
	ident, _ := protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	alice := users["alice"]
	f.Add("alice", "h2", alice, "/v1/vault", ident)
	f.Add("alice", "h3", alice, "/v1/vault", ident)
	f.Add("alice", "h2", users["carol"], "/v1/vault", ident)
	f.Add("alice", "h2", strings.ToUpper(alice), "/v1/account", []byte(nil))
	f.Add("carol", "h2", users["carol"], "/v1/identity", []byte(nil))
	f.Add("nobody", "h2", alice, "/v1/account", []byte(nil))
	f.Add("alice", "h2", alice, "/metrics", []byte(nil))
	f.Add("alice", "h2", alice, "/v1/realms/manifest", []byte("m"))
	f.Add("", "", "", "/", []byte{0})
	h := s.PeerHandler()
	f.Fuzz(func(t *testing.T, account, claim, user, path string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#\x00\r\n") || len(path) > 200 {
			return
		}
		if _, err := url.Parse("https://h1" + path); err != nil {
			return
		}
		req := httptest.NewRequest(http.MethodPost, "https://h1"+path, bytes.NewReader(body))
		if !validHeader(account) || !validHeader(claim) || !validHeader(user) {
			return
		}
		req.Header.Set(peerAccountHeader, account)
		req.Header.Set(peerHostHeader, claim)
		req.Header.Set(peerUserHeader, user)
		req.Header.Set("Authorization", "Bearer AAAA")
		req.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert.Leaf, ca}}}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code < 400 {
			allowed := false
			for _, p := range peerPaths {
				allowed = allowed || path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(path, p))
			}
			if claim != "h2" || account != "alice" || !strings.EqualFold(user, alice) || !allowed {
				t.Fatalf("served %d: account %q claim %q user %q path %q", w.Code, account, claim, user, path)
			}
		}
		if account == "carol" && claim == "h2" && strings.EqualFold(user, users["carol"]) && w.Code != http.StatusBadGateway && w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed {
			t.Fatalf("carol (on h3) at h1: %d %s", w.Code, w.Body.String())
		}
	})
}

func validHeader(v string) bool {
	for _, c := range []byte(v) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

// A realm of three hosts with two software vaults each: users who come in
// at any host are placed across all six, register, and restore through
// any host; one host killed leaves only its two vaults' users without
// service (503 at the others) while everyone else restores; a drained
// device takes nobody new.
func TestRealmOfThreeHostsAndSixVaults(t *testing.T) {
	r := newTestRealm(t)
	pubs := map[string][]byte{}
	var hosts []*testHost
	for i, hn := range []string{"h1", "h2", "h3"} {
		var devs []Device
		for j := range 2 {
			inst, pub, _ := softVault(t)
			name := fmt.Sprintf("v%d%d", i+1, j+1)
			pubs[name] = pub
			devs = append(devs, NewSoftDevice(name, inst.Vault))
		}
		hosts = append(hosts, r.addHost(hn, Config{}, devs...))
	}
	ctx := context.Background()
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	accts, tokens := r.account("", names...)
	key := func(n string) []byte { return bytes.Repeat([]byte(n[len(n)-1:]), 32) }
	device := map[string]string{}
	for i, n := range names {
		h := hosts[i%3]
		resp, b := get(t, h.api.URL+"/v1/account", tokens[n])
		var info AccountInfo
		if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil {
			t.Fatalf("%s at %s: %d %s", n, h.name, resp.StatusCode, b)
		}
		device[n] = info.Device
		c := userClient(t, h.api.URL, tokens[n], accts[n], pubs[info.Device])
		if _, err := c.Register(ctx, []byte("pw "+n), key(n), 3); err != nil {
			t.Fatalf("register %s at %s: %v", n, h.name, err)
		}
	}
	perDevice := map[string]int{}
	for _, d := range device {
		perDevice[d]++
	}
	if len(perDevice) != 6 {
		t.Fatalf("12 users placed on %d devices: %v", len(perDevice), perDevice)
	}
	restore := func(n string, h *testHost) error {
		c := userClient(t, h.api.URL, tokens[n], accts[n], pubs[device[n]])
		s, _, err := c.Login(ctx, []byte("pw "+n))
		if err != nil {
			return err
		}
		got, _, err := s.Release(ctx)
		if err == nil && !bytes.Equal(got, key(n)) {
			t.Fatalf("%s released another key", n)
		}
		return err
	}
	for i, n := range names {
		if err := restore(n, hosts[(i+1)%3]); err != nil {
			t.Fatalf("restore %s at %s: %v", n, hosts[(i+1)%3].name, err)
		}
	}

	hosts[2].kill()
	for _, n := range names {
		for _, h := range hosts[:2] {
			onH3 := strings.HasPrefix(device[n], "v3")
			if onH3 {
				err := identityAt(t, h, tokens[n])
				var he *httpError
				if !errors.As(err, &he) || he.status != 503 || !strings.Contains(he.body, "h3") {
					t.Fatalf("%s (on %s) at %s with h3 down: %v", n, device[n], h.name, err)
				}
				continue
			}
			if err := restore(n, h); err != nil {
				t.Fatalf("restore %s at %s with h3 down: %v", n, h.name, err)
			}
		}
	}

	// Drained: v11 takes nobody new, even as the emptiest.
	if err := r.st.SetDeviceState(ctx, "v11", state.Draining); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"v31", "v32"} { // h3's are gone: its devices go stale
		r.st.ReportDevice(ctx, d, state.Report{Seen: time.Now()})
	}
	newAccts, newTokens := r.account("", "late1", "late2", "late3")
	for n := range newAccts {
		resp, b := get(t, hosts[0].api.URL+"/v1/account", newTokens[n])
		var info AccountInfo
		if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil || info.Device == "v11" || strings.HasPrefix(info.Device, "v3") {
			t.Fatalf("%s placed: %d %s", n, resp.StatusCode, b)
		}
	}
}

// A removed host that still runs places no new account on its own devices,
// which would leave the account on a device that answers only 503 "host
// removed": it places them on another host's.
func TestRemovedHostPlacesNothingOnItsOwnDevices(t *testing.T) {
	r := newTestRealm(t)
	ctx := context.Background()
	h1 := r.addHost("h1", Config{}, newStub("a"))
	r.addHost("h2", Config{}, newStub("b"))
	if err := r.st.RemoveHost(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(registryCacheTTL)
	_, tokens := r.account("", "newcomer")
	identityAt(t, h1, tokens["newcomer"]) // h2 refuses the removed h1's forward: only the placement counts
	if a, err := r.st.AccountByName(ctx, "newcomer"); err != nil || a.Device != "b" {
		t.Fatalf("newcomer at the removed h1 placed on %q (%v), want b", a.Device, err)
	}
}
