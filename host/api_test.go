package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// TestRegisterLoginLockoutThroughCofferd runs the whole protocol through
// cofferd's HTTP API over an in-process software vault.
func TestRegisterLoginLockoutThroughCofferd(t *testing.T) {
	ctx := context.Background()
	inst, pub, _ := softVault(t)
	accounts, accts, tokens := testAccounts(t, "alice", "bob")
	srv, hs := testServer(t, Config{Devices: []Device{NewSoftDevice("soft", inst.Vault)}, Store: accounts})

	// Identity: through POST /v1/vault (inside userClient) and GET
	// /v1/identity, byte for byte the vault's.
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	resp, b := get(t, hs.URL+"/v1/identity", tokens["alice"])
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/cbor" {
		t.Fatalf("GET /v1/identity: %d %s", resp.StatusCode, b)
	}
	direct := inst.Vault.Handle(ctx, mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}))
	if !bytes.Equal(b, direct) {
		t.Fatal("GET /v1/identity is not the vault's reply byte for byte")
	}
	if !alice.Identity.Insecure {
		t.Fatal("the software vault's identity does not say insecure")
	}

	// GET /v1/account.
	resp, b = get(t, hs.URL+"/v1/account", tokens["alice"])
	var info AccountInfo
	if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil {
		t.Fatalf("GET /v1/account: %d %s", resp.StatusCode, b)
	}
	if info.UserID != hex.EncodeToString(accts["alice"].UserID) || info.Device != "soft" {
		t.Fatalf("GET /v1/account = %+v", info)
	}

	// Register, login, release.
	key := bytes.Repeat([]byte{0x4b}, 32)
	if _, err := alice.Register(ctx, []byte("correct horse"), key, 3); err != nil {
		t.Fatal("register:", err)
	}
	s, receipt, err := alice.Login(ctx, []byte("correct horse"))
	if err != nil {
		t.Fatal("login:", err)
	}
	if !bytes.Equal(s.BackupKey, key) || receipt.TriesLeft != 2 {
		t.Fatalf("login released %x with %d tries left", s.BackupKey, receipt.TriesLeft)
	}
	if k, _, err := s.Release(ctx); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("release: %x, %v", k, err)
	}

	// Wrong passwords until the lock; the right one no longer works.
	for want := uint(2); ; want-- {
		_, r, err := alice.Login(ctx, []byte("wrong"))
		if !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
		if r.TriesLeft != want {
			t.Fatalf("tries left %d, want %d", r.TriesLeft, want)
		}
		if want == 0 {
			break
		}
	}
	_, r, err := alice.Login(ctx, []byte("correct horse"))
	if !errors.Is(err, testclient.ErrWrongPassword) || r.Kind != protocol.ReceiptLocked {
		t.Fatalf("login after lockout: %v, receipt %+v", err, r)
	}
	if got := testutilCounter(t, srv, "cofferd_lockouts_total", nil); got != 1 {
		t.Fatalf("cofferd_lockouts_total = %v, want 1", got)
	}

	// A vault error reply is relayed as 200 with the vault's envelope, and
	// counted.
	bob := userClient(t, hs.URL, tokens["bob"], accts["bob"], pub)
	reply, err := bob.RoundTrip(ctx, mustEncode(t, protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: make([]byte, 16), KE3: make([]byte, 64)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.Decode(reply, protocol.TypeLoginFinish, &protocol.SealedReply{}); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
		t.Fatalf("unknown handle: %v", err)
	}
	if got := testutilCounter(t, srv, "cofferd_vault_errors_total", map[string]string{"device": "soft", "code": "unknown-handle"}); got < 1 {
		t.Fatalf("vault errors not counted: %v", got)
	}
}

func TestAuthentication(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	dev := newStub("stub")
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	for name, auth := range map[string]string{
		"none":          "",
		"unknown token": "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"not base64":    "Bearer !!!",
		"short token":   "Bearer " + tokens["alice"][:20],
		"basic":         "Basic " + tokens["alice"],
		"no scheme":     tokens["alice"],
	} {
		for _, path := range []string{"/v1/vault", "/v1/identity", "/v1/account"} {
			method := http.MethodGet
			if path == "/v1/vault" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, hs.URL+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/cbor")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var eb errorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != 401 || eb.Error == "" || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %s: %d %q", method, path, name, resp.StatusCode, eb.Error)
			}
		}
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("%d unauthenticated requests reached the device", n)
	}
	// The right token in a lower-case scheme works.
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v1/account", nil)
	req.Header.Set("Authorization", "bearer "+tokens["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
}

// TestAnotherAccountsUserIDIsForbidden: an account can never spend another
// account's guesses, nor register under its user id.
func TestAnotherAccountsUserIDIsForbidden(t *testing.T) {
	inst, pub, _ := softVault(t)
	accounts, accts, tokens := testAccounts(t, "alice", "mallory")
	dev := &countingDevice{Device: NewSoftDevice("soft", inst.Vault)}
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	ctx := context.Background()
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, []byte("pw"), make([]byte, 32), 10); err != nil {
		t.Fatal(err)
	}
	// Mallory drives a real client, but with Alice's user id.
	mallory := userClient(t, hs.URL, tokens["mallory"], accts["mallory"], pub)
	mallory.UserID = accts["alice"].UserID
	before := dev.calls.Load()
	if _, _, err := mallory.Login(ctx, []byte("guess")); statusOf(err) != 403 {
		t.Fatalf("login-start with another's user id: %v", err)
	}
	if _, err := mallory.Register(ctx, []byte("pw"), make([]byte, 32), 10); statusOf(err) != 403 {
		t.Fatalf("register-start with another's user id: %v", err)
	}
	// Nor read another account's attempt count.
	if _, _, err := mallory.UserStatus(ctx); statusOf(err) != 403 {
		t.Fatalf("user-status with another's user id: %v", err)
	}
	if n := dev.calls.Load() - before; n != 0 {
		t.Fatalf("%d forbidden requests reached the vault", n)
	}
	// Alice still has all her tries, and may read her own count.
	if st, _, err := alice.UserStatus(ctx); err != nil || st.TriesLeft != 10 || st.FailedSinceSuccess != 0 {
		t.Fatalf("alice's own user status: %v %+v", err, st)
	}
	_, r, err := alice.Login(ctx, []byte("pw"))
	if err != nil || r.FailedSinceSuccess != 0 || r.TriesLeft != 9 {
		t.Fatalf("alice after mallory: %v %+v", err, r)
	}
}

func TestBadBodies(t *testing.T) {
	accounts, accts, tokens := testAccounts(t, "alice")
	dev := newStub("stub")
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	tok := tokens["alice"]
	send := func(method, ctype string, body []byte, chunked bool) (int, errorBody) {
		t.Helper()
		var r = bytes.NewReader(body)
		req, _ := http.NewRequest(method, hs.URL+"/v1/vault", r)
		if chunked {
			req.ContentLength = -1
			req.Body = http.NoBody
			req.Body = struct {
				*bytes.Reader
				closer
			}{bytes.NewReader(body), closer{}}
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("error reply is not JSON: %v", err)
		}
		return resp.StatusCode, eb
	}
	valid := loginStart(t, accts["alice"].UserID)
	errorEnvelope := protocol.EncodeError(protocol.Errorf(protocol.CodeBusy, "x"))
	badVersion := bytes.Replace(valid, []byte{0x01, 0x01}, []byte{0x01, 0x02}, 1)
	loginNoKE1 := mustEncodeRaw(t, protocol.TypeLoginStart, map[int]any{1: accts["alice"].UserID})
	cases := []struct {
		name    string
		method  string
		ctype   string
		body    []byte
		chunked bool
		want    int
	}{
		{"garbage", "POST", "application/cbor", []byte("hello, vault"), false, 400},
		{"empty", "POST", "application/cbor", nil, false, 400},
		{"an error reply", "POST", "application/cbor", errorEnvelope, false, 400},
		{"other version", "POST", "application/cbor", badVersion, false, 400},
		{"login-start without KE1", "POST", "application/cbor", loginNoKE1, false, 400},
		{"trailing bytes", "POST", "application/cbor", append(bytes.Clone(valid), 0), false, 400},
		{"oversize", "POST", "application/cbor", make([]byte, protocol.MaxMessageSize+1), false, 413},
		{"oversize chunked", "POST", "application/cbor", make([]byte, 3*protocol.MaxMessageSize), true, 413},
		{"json", "POST", "application/json", valid, false, 415},
		{"GET", "GET", "", nil, false, 405},
	}
	for _, c := range cases {
		if got, eb := send(c.method, c.ctype, c.body, c.chunked); got != c.want || eb.Error == "" {
			t.Errorf("%s: %d %q, want %d", c.name, got, eb.Error, c.want)
		}
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("%d bad requests reached the device", n)
	}
	// A message of exactly the limit is read (and refused as garbage, not
	// as too large).
	if got, _ := send("POST", "application/cbor", make([]byte, protocol.MaxMessageSize), false); got != 400 {
		t.Fatalf("body of exactly %d bytes: %d", protocol.MaxMessageSize, got)
	}
	// Unknown paths answer JSON 404.
	resp, b := get(t, hs.URL+"/v2/vault", tok)
	if resp.StatusCode != 404 || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("unknown path: %d %s", resp.StatusCode, b)
	}
}

type closer struct{}

func (closer) Close() error { return nil }

// mustEncodeRaw builds an envelope whose body is any CBOR map, valid or not.
func mustEncodeRaw(t testing.TB, typ protocol.Type, body map[int]any) []byte {
	t.Helper()
	b, err := cborMarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	env, err := protocol.Marshal(&protocol.Envelope{Version: 1, Type: typ, Body: b})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestLoginRateLimit(t *testing.T) {
	accounts, accts, tokens := testAccounts(t, "alice", "bob")
	dev := newStub("stub")
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	srv, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, LoginRate: DefaultLoginRate, LoginBurst: 5, Now: clock})
	ctx := context.Background()
	start := func(who string) error {
		_, err := post(ctx, http.DefaultClient, hs.URL, tokens[who], loginStart(t, accts[who].UserID))
		return err
	}
	for i := range 5 {
		if err := start("alice"); err != nil {
			t.Fatalf("login start %d of the burst: %v", i+1, err)
		}
	}
	err := start("alice")
	var he *httpError
	if !errors.As(err, &he) || he.status != 429 {
		t.Fatalf("6th login start: %v", err)
	}
	if ra, _ := strconv.Atoi(he.retryAfter); ra < 1 || ra > 6 {
		t.Fatalf("Retry-After %q, want 1..6 s at 10/min", he.retryAfter)
	}
	if n := dev.calls.Load(); n != 5 {
		t.Fatalf("%d login starts reached the device, want 5", n)
	}
	// Other requests of the same account, and other accounts, go on.
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})); err != nil {
		t.Fatalf("identity while rate limited: %v", err)
	}
	if err := start("bob"); err != nil {
		t.Fatalf("another account: %v", err)
	}
	// One token comes back every 6 s.
	advance(6 * time.Second)
	if err := start("alice"); err != nil {
		t.Fatalf("after 6 s: %v", err)
	}
	if err := start("alice"); statusOf(err) != 429 {
		t.Fatalf("second start after 6 s: %v", err)
	}
	if got := testutilCounter(t, srv, "cofferd_rate_limited_total", nil); got != 2 {
		t.Fatalf("cofferd_rate_limited_total = %v, want 2", got)
	}
}

// TestQueueFullIsExplicitBackpressure: with the device's places in flight
// and its queue full, the next request is refused at once with 503 and
// Retry-After, and nothing waits without bound.
func TestQueueFullIsExplicitBackpressure(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	dev := newStub("stub")
	dev.gate = make(chan struct{})
	dev.entered = make(chan struct{}, 10)
	srv, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, InFlight: 1, Queue: 1})
	ctx := context.Background()
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	errs := make(chan error, 2)
	go func() { _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], body); errs <- err }()
	<-dev.entered // the first is in flight
	go func() { _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], body); errs <- err }()
	waitFor(t, "a request in the queue", func() bool { return srv.devices[0].waiting.Load() == 1 })
	if h := srv.Health(); h.Devices["stub"].Queue != 1 || h.Devices["stub"].InFlight != 1 {
		t.Fatalf("health while full: %+v", h.Devices["stub"])
	}
	if got := testutilGauge(t, srv, "cofferd_queue_depth", map[string]string{"device": "stub"}); got != 1 {
		t.Fatalf("cofferd_queue_depth = %v", got)
	}

	t0 := time.Now()
	_, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], body)
	var he *httpError
	if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" {
		t.Fatalf("request over a full queue: %v", err)
	}
	// A request that waited would take the whole Timeout (10 s).
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("refusal took %v: it waited", d)
	}
	if n := dev.calls.Load(); n != 1 {
		t.Fatalf("%d requests reached the device", n)
	}
	// Free the device: both waiting requests are answered.
	dev.gate <- struct{}{}
	<-dev.entered
	dev.gate <- struct{}{}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := testutilCounter(t, srv, "cofferd_device_failures_total", map[string]string{"device": "stub", "reason": "queue_full"}); got != 1 {
		t.Fatalf("queue_full failures = %v", got)
	}
}

// TestTimeouts: a request that waited its whole timeout in the queue was
// never sent (503); one the vault did not answer in time may have been
// processed (504).
func TestTimeouts(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	ctx := context.Background()
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})

	// A device that holds its one place in flight past the timeout.
	dev := newStub("stub")
	dev.gate, dev.ignoreCtx = make(chan struct{}), true
	dev.entered = make(chan struct{}, 10)
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, InFlight: 1, Queue: 4, Timeout: 200 * time.Millisecond})
	first := make(chan error, 1)
	go func() { _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], body); first <- err }()
	<-dev.entered
	_, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], body)
	var he *httpError
	if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" || !strings.Contains(he.body, "nothing was sent") {
		t.Fatalf("timed out in queue: %v", err)
	}
	if n := dev.calls.Load(); n != 1 {
		t.Fatalf("the queued request reached the device (%d calls)", n)
	}
	close(dev.gate)
	<-first

	// A device that never answers.
	slow := newStub("slow")
	slow.gate = make(chan struct{})
	accounts, _, tokens = testAccounts(t, "alice")
	_, hs = testServer(t, Config{Devices: []Device{slow}, Store: accounts, Timeout: 200 * time.Millisecond})
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], body); statusOf(err) != 504 {
		t.Fatalf("vault did not answer in time: %v", err)
	}
}

func TestDisconnectedDevice(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	dev := newStub("stub")
	dev.connected.Store(false)
	srv, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	_, err := post(context.Background(), http.DefaultClient, hs.URL, tokens["alice"], mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}))
	var he *httpError
	if !errors.As(err, &he) || he.status != 503 || he.retryAfter == "" {
		t.Fatalf("disconnected device: %v", err)
	}
	if dev.calls.Load() != 0 {
		t.Fatal("a request was sent to a disconnected device")
	}
	resp, b := get(t, hs.URL+"/healthz", "")
	var h Health
	json.Unmarshal(b, &h)
	if resp.StatusCode != 503 || h.Status != "down" || h.Devices["stub"].Connected {
		t.Fatalf("healthz with the only device down: %d %s", resp.StatusCode, b)
	}
	if got := testutilGauge(t, srv, "cofferd_device_connected", map[string]string{"device": "stub"}); got != 0 {
		t.Fatalf("cofferd_device_connected = %v", got)
	}
	dev.connected.Store(true)
	resp, b = get(t, hs.URL+"/healthz", "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"ok"`) {
		t.Fatalf("healthz with the device back: %d %s", resp.StatusCode, b)
	}
}

// TestRoutingToDevices: accounts reach the device they are placed on: one
// placed on b stays on b, one on no device is placed (on a: both are
// empty, and a comes first), and one placed on a device registered to this
// host but not configured gets a clear error.
func TestRoutingToDevices(t *testing.T) {
	a, b := newStub("a"), newStub("b")
	accounts := state.NewMemory()
	_, toks := addAccounts(t, accounts, "", "on-a")
	tokA := toks["on-a"]
	_, toks = addAccounts(t, accounts, "b", "on-b")
	tokB := toks["on-b"]
	_, toks = addAccounts(t, accounts, "gone", "on-gone")
	tokC := toks["on-gone"]
	srv, hs := testServer(t, Config{Devices: []Device{a, b}, Store: accounts})
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	ctx := context.Background()
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokA, body); err != nil || a.calls.Load() != 1 || b.calls.Load() != 0 {
		t.Fatalf("placed device: %v, a %d b %d", err, a.calls.Load(), b.calls.Load())
	}
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokB, body); err != nil || b.calls.Load() != 1 {
		t.Fatalf("device b: %v", err)
	}
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokC, body); statusOf(err) != 500 {
		t.Fatalf("unconfigured device: %v", err)
	}
	// One device down is "degraded", still 200.
	b.connected.Store(false)
	if h := srv.Health(); h.Status != "degraded" {
		t.Fatalf("health with one of two devices down: %s", h.Status)
	}
	resp, _ := get(t, hs.URL+"/healthz", "")
	if resp.StatusCode != 200 {
		t.Fatalf("degraded healthz: %d", resp.StatusCode)
	}
	srv.Close()
	if !a.closed.Load() || !b.closed.Load() {
		t.Fatal("Close did not close the devices")
	}
}

// TestProvisioningRequestsAreNotRelayed: an account must not be able to
// re-sign the vault's identity with a key of its own and install it through
// cofferd, which would make every client pinned to the real provisioning key
// refuse the vault. cofferd refuses both provisioning requests (403) and
// neither reaches the vault; clients still verify the real bundle.
func TestProvisioningRequestsAreNotRelayed(t *testing.T) {
	inst, pub, _ := softVault(t)
	accounts, accts, tokens := testAccounts(t, "alice", "mallory")
	dev := &countingDevice{Device: NewSoftDevice("soft", inst.Vault)}
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	ctx := context.Background()
	mallory := via(hs.URL, tokens["mallory"])

	before := dev.calls.Load()
	if _, err := mallory(ctx, mustEncode(t, protocol.TypeUnsignedIdentity, &protocol.Empty{})); statusOf(err) != http.StatusForbidden ||
		!strings.Contains(err.Error(), "provisioning") {
		t.Errorf("unsigned-identity through cofferd: %v", err)
	}
	// The unsigned identity is also the body of the bundle anyone may read.
	reply, err := mallory(ctx, mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}))
	if err != nil {
		t.Fatal(err)
	}
	var real protocol.SignedIdentity
	if err := protocol.Decode(reply, protocol.TypeIdentity, &real); err != nil {
		t.Fatal(err)
	}
	var id protocol.Identity
	if err := protocol.Unmarshal(real.Body, &id); err != nil {
		t.Fatal(err)
	}
	_, malloryKey, _ := ed25519.GenerateKey(nil)
	forged, err := protocol.SignIdentity(malloryKey, &id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mallory(ctx, mustEncode(t, protocol.TypeInstallIdentity, &forged)); statusOf(err) != http.StatusForbidden ||
		!strings.Contains(err.Error(), "provisioning") {
		t.Errorf("install-identity through cofferd: %v", err)
	}
	if n := dev.calls.Load() - before; n != 1 {
		t.Errorf("%d requests reached the vault, want only the identity request", n)
	}
	// Clients pinned to the real provisioning key still accept the vault.
	if _, err := testclient.FetchIdentity(ctx, via(hs.URL, tokens["alice"]), pub); err != nil {
		t.Fatalf("alice no longer verifies the vault's identity: %v", err)
	}
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, []byte("pw"), make([]byte, 32), 5); err != nil {
		t.Fatalf("alice cannot register: %v", err)
	}
}
