package host

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
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

	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// fakePeer registers host name in the realm as the tests' own: its peer
// URL, its certificate's key, a fresh heartbeat, and device dev on it,
// reported healthy.
func (r *testRealm) fakePeer(name, peerURL, dev string, c tls.Certificate) {
	r.t.Helper()
	ctx := context.Background()
	if err := r.st.RegisterHost(ctx, state.Host{Name: name, PeerURL: peerURL, Seen: time.Now(), Instance: "fake-" + name, PeerKey: PeerKeyHash(c.Leaf)}, time.Minute); err != nil {
		r.t.Fatal(err)
	}
	if dev != "" {
		if err := r.st.RegisterDevice(ctx, dev, name); err != nil {
			r.t.Fatal(err)
		}
		if err := r.st.ReportDevice(ctx, dev, state.Report{Healthy: true, Seen: time.Now()}); err != nil {
			r.t.Fatal(err)
		}
	}
}

// hungPeer plays a peer host holding device dev that accepts TLS and
// reads each forwarded request but never answers (until the test ends, or
// the forward is dropped); it returns the count of forwards it holds.
func (r *testRealm) hungPeer(name, dev string) *atomic.Int64 {
	t := r.t
	t.Helper()
	release := make(chan struct{})
	var hanging atomic.Int64
	hole := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hanging.Add(1)
		io.Copy(io.Discard, req.Body) // then a dropped forward cancels the context
		select {
		case <-release:
		case <-req.Context().Done():
		}
	}))
	c := r.cert(name)
	tc, err := PeerConfig{Cert: &c, CA: r.pool}.PeerServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	hole.TLS = tc
	hole.Config.ErrorLog = log.New(io.Discard, "", 0)
	hole.StartTLS()
	t.Cleanup(func() { close(release); hole.CloseClientConnections(); hole.Close() })
	r.fakePeer(name, hole.URL, dev, c)
	return &hanging
}

// An operator (or a tampered registry) gives a peer a plain http:// URL:
// no forward is sent there in the clear; the host's users get 503 and
// /healthz names why.
func TestPlainHTTPPeerURLIsRefused(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })}
	go plain.Serve(cl)
	t.Cleanup(func() { plain.Close() })
	r.fakePeer("h2", "http://"+ln.Addr().String(), "b", r.cert("h2"))
	_, tokens := r.account("b", "bob")
	err = identityAt(t, h1, tokens["bob"])
	var he *httpError
	if !errors.As(err, &he) || he.status != http.StatusServiceUnavailable {
		t.Fatalf("bob on a host with an http:// peer URL: %v", err)
	}
	if n := cl.n.Load(); n != 0 {
		t.Fatalf("%d connections opened to an http:// peer URL", n)
	}
	if ph := h1.srv.Health().Peers["h2"]; ph.Reachable || !strings.Contains(ph.Error, "https") {
		t.Fatalf("healthz on h2: %+v", ph)
	}
}

// Two processes started under one host name (the default, the machine's
// name, on two machines named alike) would share the device names vault0,
// vault1…: one account on two vaults. The second is refused.
func TestSameHostNameTwiceIsRefused(t *testing.T) {
	st := state.NewMemory()
	s1, err := New(Config{Devices: []Device{newStub("vault0")}, Store: st, HostName: "node1", Log: quiet, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Devices: []Device{newStub("vault0")}, Store: st, HostName: "node1", Log: quiet, PollInterval: -1})
	if !errors.Is(err, state.ErrExists) || !strings.Contains(err.Error(), "node1") {
		t.Fatalf("a second node1 with vault0: %v", err)
	}
	// Stopped cleanly, the first lets the next process start at once.
	s1.Close()
	s3, err := New(Config{Devices: []Device{newStub("vault0")}, Store: st, HostName: "node1", Log: quiet, PollInterval: -1})
	if err != nil {
		t.Fatalf("node1 restarted after a clean stop: %v", err)
	}
	s3.Close()
}

// Certificates of the peer CA act only as the host that registered them:
// not for an unregistered name, not a second key for a registered name,
// not after `cofferd host remove`.
func TestPeerCertificateMustBeTheRegisteredOne(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	r.account("a", "bob")
	ident := identityBody(t)
	dev := h1.srv.byName["a"].dev.(*stubDevice)

	code, msg, err := peerRequest(t, r.st, peerClient(r.cert("h9"), r.pool), h1.peer.URL, "h9", "bob", ident)
	if err != nil || code != http.StatusForbidden {
		t.Fatalf("an unregistered host's certificate: %d %s %v", code, msg, err)
	}
	h2 := r.peerCert("h2")
	code, msg, err = peerRequest(t, r.st, peerClient(r.cert("h2"), r.pool), h1.peer.URL, "h2", "bob", ident)
	if err != nil || code != http.StatusForbidden {
		t.Fatalf("a second certificate for h2, another key: %d %s %v", code, msg, err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("refused peers reached the device %d times", n)
	}
	time.Sleep(registryCacheTTL) // h1 reads the registry again
	if code, msg, err := peerRequest(t, r.st, peerClient(h2, r.pool), h1.peer.URL, "h2", "bob", ident); err != nil || code != 200 {
		t.Fatalf("h2's registered certificate: %d %s %v", code, msg, err)
	}
	if err := r.st.RemoveHost(context.Background(), "h2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "h2's removal to be seen", func() bool {
		code, _, err := peerRequest(t, r.st, peerClient(h2, r.pool), h1.peer.URL, "h2", "bob", ident)
		return err == nil && code == http.StatusForbidden
	})
}

// The forwarding side checks the key too: a listener with another
// certificate of the CA for the right name gets nothing.
func TestForwardChecksThePeerKey(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	h2 := r.addHost("h2", Config{}, newStub("b"))
	_, tokens := r.account("b", "bob")
	// h2's entry says another key than its listener's certificate.
	e := r.registered("h2")
	e.PeerKey = PeerKeyHash(r.cert("h2").Leaf)
	if err := r.st.RegisterHost(context.Background(), e, time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(registryCacheTTL)
	err := identityAt(t, h1, tokens["bob"])
	var he *httpError
	if !errors.As(err, &he) || he.status != http.StatusServiceUnavailable {
		t.Fatalf("bob through a peer with another key: %v", err)
	}
	if n := h2.srv.byName["b"].dev.(*stubDevice).calls.Load(); n != 0 {
		t.Fatalf("h2 was sent %d requests", n)
	}
	if ph := h1.srv.Health().Peers["h2"]; ph.Reachable || !strings.Contains(ph.Error, "certificate") {
		t.Fatalf("healthz on h2: %+v", ph)
	}
}

// -peer-ca is the realm's one CA: a bundle (any of whose certificates
// would issue peers) or a leaf is refused.
func TestPeerCAMustBeOneCA(t *testing.T) {
	now := time.Now()
	caDir, otherDir, out := t.TempDir(), t.TempDir(), t.TempDir()
	if err := WritePeerCA(caDir, now); err != nil {
		t.Fatal(err)
	}
	if err := WritePeerCA(otherDir, now); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile, err := WritePeerCert(caDir, "h1", out, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPeerConfig("https://h1:8421", certFile, keyFile, caFile); err != nil {
		t.Fatalf("the realm's CA: %v", err)
	}
	der := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		return blk.Bytes
	}
	bundle, leaf := filepath.Join(out, "bundle.crt"), filepath.Join(out, "leaf.crt")
	writePEMs(t, bundle, der(caFile), der(filepath.Join(otherDir, PeerCACert)))
	writePEMs(t, leaf, der(certFile))
	for name, f := range map[string]string{"a bundle": bundle, "a leaf": leaf} {
		if _, err := LoadPeerConfig("https://h1:8421", certFile, keyFile, f); err == nil {
			t.Errorf("%s as -peer-ca was accepted", name)
		}
	}
}

// A peer that accepts TLS and never answers holds at most PeerInFlight of
// this host's connections: its own users are still served, and further
// forwards there are refused at once.
func TestSlowPeerDoesNotStarveLocalUsers(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{MaxConnections: 6, PeerInFlight: 3, Timeout: 3 * time.Second}, newStub("a"))
	hanging := r.hungPeer("h2", "b")
	_, tokens := r.account("b", "bob")
	_, local := r.account("a", "alice")

	// h1's API on a listener bounded by -max-conns.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := &http.Server{Handler: h1.srv.Handler()}
	go api.Serve(h1.srv.Listener(ln, nil))
	t.Cleanup(func() { api.Close() })
	base := "http://" + ln.Addr().String()
	oneShot := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	ident := identityBody(t)
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, base+"/v1/vault", strings.NewReader(string(ident)))
			req.Header.Set("Authorization", "Bearer "+tokens["bob"])
			resp, err := oneShot().Do(req)
			if err != nil {
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	t.Cleanup(wg.Wait)
	// Three hang at the peer; the other three are refused at once.
	for range 3 {
		select {
		case c := <-codes:
			if c != http.StatusServiceUnavailable {
				t.Fatalf("a forward beyond the bound: %d", c)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("forwards beyond the bound were not refused at once (%d hanging at the peer)", hanging.Load())
		}
	}
	waitFor(t, "three forwards at the peer", func() bool { return hanging.Load() == 3 })
	// alice's device is here: she is served.
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/vault", strings.NewReader(string(ident)))
	req.Header.Set("Authorization", "Bearer "+local["alice"])
	resp, err := oneShot().Do(req)
	if err != nil {
		t.Fatalf("alice while h2 hangs: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("alice while h2 hangs: %d", resp.StatusCode)
	}
	// One more for bob: refused at once, with Retry-After.
	req, _ = http.NewRequest(http.MethodPost, base+"/v1/vault", strings.NewReader(string(ident)))
	req.Header.Set("Authorization", "Bearer "+tokens["bob"])
	resp, err = oneShot().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("bob beyond the bound: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Counted as busy, not as the peer being down: 3 + bob's.
	if n := testutilCounter(t, h1.srv, "cofferd_forwarded_requests_total", map[string]string{"peer": "h2", "code": "busy"}); n != 4 {
		t.Errorf("forwards refused as busy counted %v, want 4", n)
	}
}

// After consecutive forwards without an answer, forwards to that peer fail
// at once for a while: no connection is tried for each.
func TestBreakerFailsFast(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	r.fakePeer("h2", "https://"+ln.Addr().String(), "b", r.cert("h2"))
	_, tokens := r.account("b", "bob")
	for i := range 2 * breakerFailures {
		if err := identityAt(t, h1, tokens["bob"]); statusOf(err) != http.StatusServiceUnavailable {
			t.Fatalf("forward %d to a dead peer: %v", i, err)
		}
	}
	if n := accepted.Load(); n != breakerFailures {
		t.Fatalf("%d connections for %d forwards, want %d before the breaker opened", n, 2*breakerFailures, breakerFailures)
	}
	// The metric tells the forwards that failed from those not tried.
	for code, want := range map[string]float64{"unreachable": breakerFailures, "failing_fast": breakerFailures} {
		if n := testutilCounter(t, h1.srv, "cofferd_forwarded_requests_total", map[string]string{"peer": "h2", "code": code}); n != want {
			t.Errorf("forwards to h2 counted %v as %s, want %v", n, code, want)
		}
	}
}

// New accounts are not placed on devices whose host this host cannot
// forward to: no peer URL, no fresh heartbeat, or its last forward failed.
func TestPlacementSkipsUnreachableHosts(t *testing.T) {
	r := newTestRealm(t)
	ctx := context.Background()
	h1 := r.addHost("h1", Config{}, newStub("a"))
	if err := r.st.SetDeviceLimits(ctx, "a", 10, 0); err != nil { // little room here
		t.Fatal(err)
	}
	r.account("a", "x1", "x2", "x3")
	c2, c3 := r.cert("h2"), r.cert("h3")
	r.fakePeer("h2", "", "b", c2)                    // no peer URL
	r.fakePeer("h3", "https://127.0.0.1:1", "c", c3) // stale, below
	e := r.registered("h3")
	e.Seen = time.Now().Add(-time.Hour)
	if err := r.st.RegisterHost(ctx, e, time.Minute); err != nil {
		t.Fatal(err)
	}
	// h4 is fresh but does not answer: its last forward failed.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	r.fakePeer("h4", "https://"+dead.Addr().String(), "d", r.cert("h4"))
	_, old := r.account("d", "dave")
	_, tokens := r.account("", "newbie")
	time.Sleep(registryCacheTTL)
	if err := identityAt(t, h1, old["dave"]); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("dave on h4: %v", err)
	}
	if err := identityAt(t, h1, tokens["newbie"]); err != nil {
		t.Fatalf("newbie's first request: %v", err)
	}
	if a, _ := r.st.AccountByName(ctx, "newbie"); a.Device != "a" {
		t.Fatalf("newbie placed on %q, a device of an unreachable host", a.Device)
	}
}

// A removed account's token, still in a forwarding host's cache, must not
// act as the new account of the same name at the home host.
func TestRemovedAccountsTokenDoesNotReachItsSuccessor(t *testing.T) {
	r := newTestRealm(t)
	ctx := context.Background()
	h1 := r.addHost("h1", Config{}, newStub("a"))
	h2 := r.addHost("h2", Config{}, newStub("b"))
	_, tokens := r.account("a", "alice")
	if resp, b := get(t, h2.api.URL+"/v1/account", tokens["alice"]); resp.StatusCode != 200 {
		t.Fatalf("alice at h2: %d %s", resp.StatusCode, b)
	}
	if err := r.st.RemoveAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	newAlice, _ := r.account("a", "alice")
	// h1 as if restarted (its cache empty); h2 still holds the old token.
	h1.srv.cache = newRealmCache()
	resp, b := get(t, h2.api.URL+"/v1/account", tokens["alice"])
	var info AccountInfo
	json.Unmarshal(b, &info)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("the old alice's token reached %d %s (the new alice's user id is %x)", resp.StatusCode, b, newAlice["alice"].UserID)
	}
}

// /healthz, which anyone may read, names a failed peer and the class of
// failure, never the forwarded request's path or query.
func TestHealthDoesNotEchoForwardedURLs(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{}, newStub("a"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused
	r.fakePeer("h2", "https://"+addr, "b", r.cert("h2"))
	_, tokens := r.account("b", "bob")
	if resp, _ := get(t, h1.api.URL+"/v1/realms/manifest/"+strings.Repeat("ab", 32)+"?secretquery=1", tokens["bob"]); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("forward to a dead peer: %d", resp.StatusCode)
	}
	resp, b := get(t, h1.api.URL+"/healthz", "")
	resp.Body.Close()
	if strings.Contains(string(b), "secretquery") || strings.Contains(string(b), "/v1/realms") || !strings.Contains(string(b), "h2") {
		t.Fatalf("healthz: %s", b)
	}
}

// HEAD through a forwarding host says the item's length.
func TestHeadThroughAForwardingHost(t *testing.T) {
	r := newTestRealm(t)
	r.addHost("h1", Config{Realms: testRealmStore(t, t.TempDir())}, newStub("a"))
	h2 := r.addHost("h2", Config{Realms: testRealmStore(t, t.TempDir())}, newStub("b"))
	_, tokens := r.account("a", "alice")
	hash := putManifest(t, r.hosts["h1"].api.URL, tokens["alice"], manifestBytes("m", 100))
	rr := realmDo(t, http.MethodHead, h2.api.URL+"/v1/realms/manifest/"+hash, tokens["alice"], nil, false)
	if rr.status != 200 || rr.header.Get("Content-Length") != "100" {
		t.Fatalf("HEAD through h2: %d Content-Length %q", rr.status, rr.header.Get("Content-Length"))
	}
}

func writePEMs(t *testing.T, path string, ders ...[]byte) {
	t.Helper()
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func identityBody(t testing.TB) []byte {
	return mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
}

// tokenLookups counts the store's token lookups.
type tokenLookups struct {
	state.Store
	n atomic.Int64
}

func (c *tokenLookups) AccountByToken(ctx context.Context, sum [32]byte) (Account, error) {
	c.n.Add(1)
	return c.Store.AccountByToken(ctx, sum)
}

// A client repeating a token the realm does not know costs the shared
// database one lookup, not one per request.
func TestUnknownTokenIsNotLookedUpEachTime(t *testing.T) {
	st := &tokenLookups{Store: state.NewMemory()}
	_, hs := testServer(t, Config{Devices: []Device{newStub("a")}, Store: st})
	bogus := strings.Repeat("A", 43)
	t0 := time.Now()
	for range 20 {
		if resp, _ := get(t, hs.URL+"/v1/account", bogus); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a bogus token: %d", resp.StatusCode)
		}
	}
	// One lookup per cache lifetime the requests spanned (one, unless
	// the machine stalled them): never one per request.
	if n, most := st.n.Load(), 1+int64(time.Since(t0)/authCacheTTL); n > most {
		t.Fatalf("20 requests with one unknown token over %v: %d store lookups", time.Since(t0), n)
	}
}

// A client that hangs up while its request waits on a peer says nothing of
// the peer: it does not count as the peer's answer, so clients that give up
// on a hung peer do not keep it shown reachable (nor its breaker shut).
func TestClientHangingUpIsNoWordOnThePeer(t *testing.T) {
	r := newTestRealm(t)
	h1 := r.addHost("h1", Config{Timeout: 100 * time.Millisecond}, newStub("a"))
	r.hungPeer("h2", "b")
	_, tokens := r.account("b", "bob")
	ident := identityBody(t)

	// One forward waits out the peer: it is unreachable (timeout).
	if _, err := post(context.Background(), http.DefaultClient, h1.api.URL, tokens["bob"], ident); statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("forward to a hung peer: %v", err)
	}
	if p := h1.srv.Health().Peers["h2"]; p.Reachable {
		t.Fatalf("hung h2 shown reachable after a timeout: %+v", p)
	}
	// Clients that give up sooner leave it so.
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := post(ctx, http.DefaultClient, h1.api.URL, tokens["bob"], ident)
		cancel()
		if err == nil {
			t.Fatal("a hung peer answered")
		}
	}
	waitFor(t, "the abandoned forwards released", func() bool {
		return testutilCounter(t, h1.srv, "cofferd_requests_total", map[string]string{"code": "499"}) >= 3
	})
	if p := h1.srv.Health().Peers["h2"]; p.Reachable {
		t.Fatalf("hung h2 shown reachable after clients hung up on it: %+v", p)
	}
}

// Making a CA or a host's certificate again where one is refuses, and the
// key and certificate there stay as they were: a rerun never replaces the
// realm's CA key, which would orphan every certificate it issued.
func TestPeerFilesAreNeverReplaced(t *testing.T) {
	now := time.Now()
	caDir, out := t.TempDir(), t.TempDir()
	if err := WritePeerCA(caDir, now); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, _, err := WritePeerCert(caDir, "h1", out, now)
	if err != nil {
		t.Fatal(err)
	}
	read := func(paths ...string) (all string) {
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			all += string(b)
		}
		return all
	}
	caKey, caCert := filepath.Join(caDir, PeerCAKey), filepath.Join(caDir, PeerCACert)
	before := read(caKey, caCert, certFile, keyFile)
	if err := WritePeerCA(caDir, now); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("a second CA in the same folder: %v, want fs.ErrExist", err)
	}
	if _, _, _, err := WritePeerCert(caDir, "h1", out, now); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("a second certificate for h1: %v, want fs.ErrExist", err)
	}
	if read(caKey, caCert, certFile, keyFile) != before {
		t.Fatal("a refused rerun changed the files")
	}
	for _, dir := range []string{caDir, out} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left behind in %s: %s", dir, e.Name())
			}
		}
	}
}
