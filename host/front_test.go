package host

import (
	"bytes"
	"context"
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// testFront is the messenger's side of the front listener: its private CA,
// its backend's client certificate, and the CA of cofferd's front
// certificate, which the backend trusts.
type testFront struct {
	t          testing.TB
	pool       *x509.CertPool // the messenger's CA, which cofferd trusts for clients
	client     tls.Certificate
	serverCert tls.Certificate
	serverPool *x509.CertPool
}

func newTestFront(t testing.TB) *testFront {
	t.Helper()
	now := time.Now()
	ca, key, err := newPeerCA("messenger CA", now)
	if err != nil {
		t.Fatal(err)
	}
	client, err := issuePeerCert(ca, key, "backend", now)
	if err != nil {
		t.Fatal(err)
	}
	sca, skey, err := newPeerCA("cofferd front CA", now)
	if err != nil {
		t.Fatal(err)
	}
	server, err := issuePeerCert(sca, skey, "cofferd", now)
	if err != nil {
		t.Fatal(err)
	}
	f := &testFront{t: t, pool: x509.NewCertPool(), client: client, serverCert: server, serverPool: x509.NewCertPool()}
	f.pool.AddCert(ca)
	f.serverPool.AddCert(sca)
	return f
}

// serve starts s's front listener.
func (f *testFront) serve(s *Server) *httptest.Server {
	f.t.Helper()
	ts := httptest.NewUnstartedServer(s.FrontHandler())
	ts.TLS = FrontServerTLS(f.serverCert, f.pool)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	f.t.Cleanup(ts.Close)
	return ts
}

// httpClient is a backend presenting cert (none if nil), checking
// cofferd's certificate against the front server CA.
func (f *testFront) httpClient(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: f.serverPool, ServerName: "cofferd", MinVersion: tls.VersionTLS13}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
}

// frontDo sends one request through the front listener for user ("":
// no header), with extra headers.
func frontDo(t testing.TB, c *http.Client, method, url, user string, body []byte, hdr map[string]string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", "application/cbor")
	}
	if user != "" {
		req.Header.Set(FrontUserHeader, user)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// frontInfo is GET /v1/account through the front listener.
func frontInfo(t testing.TB, c *http.Client, url, user string) AccountInfo {
	t.Helper()
	code, b, err := frontDo(t, c, http.MethodGet, url+"/v1/account", user, nil, nil)
	var info AccountInfo
	if err != nil || code != 200 || json.Unmarshal(b, &info) != nil {
		t.Fatalf("GET /v1/account for front user %q: %d %s %v", user, code, b, err)
	}
	return info
}

// Mallory holds a valid token for her own account and names Bob in the
// header the messenger's backend uses on the front listener: the public
// API never reads it, so she reaches only her own account; without a
// token the header alone is nothing.
func TestPublicAPIIgnoresFrontUserHeader(t *testing.T) {
	st, accts, tokens := testAccounts(t, "mallory", "bob")
	dev := newStub("a")
	s, ts := testServer(t, Config{Store: st, Devices: []Device{dev}})
	// Bob as a fronted user too, so that both of his accounts exist.
	f := newTestFront(t)
	fts := f.serve(s)
	fbob := frontInfo(t, f.httpClient(&f.client), fts.URL, "bob")
	for _, named := range []string{"bob", "f.bob"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/account", nil)
		req.Header.Set("Authorization", "Bearer "+tokens["mallory"])
		req.Header.Set("Coffer-Front-User", named)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var info AccountInfo
		if resp.StatusCode != 200 || json.Unmarshal(b, &info) != nil || info.UserID != hex.EncodeToString(accts["mallory"].UserID) {
			t.Fatalf("GET /v1/account with mallory's token and Coffer-Front-User: %s: %d %s", named, resp.StatusCode, b)
		}
		// A login start naming either of Bob's user ids is another
		// account's: refused before the device.
		for _, uid := range []string{hex.EncodeToString(accts["bob"].UserID), fbob.UserID} {
			id, _ := hex.DecodeString(uid)
			req, _ = http.NewRequest(http.MethodPost, ts.URL+"/v1/vault", bytes.NewReader(loginStart(t, id)))
			req.Header.Set("Authorization", "Bearer "+tokens["mallory"])
			req.Header.Set("Coffer-Front-User", named)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("bob's login start with mallory's token and Coffer-Front-User: %s: %d", named, resp.StatusCode)
			}
		}
		req, _ = http.NewRequest(http.MethodGet, ts.URL+"/v1/account", nil)
		req.Header.Set("Coffer-Front-User", named)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Coffer-Front-User: %s without a token on the public API: %d", named, resp.StatusCode)
		}
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("the device was sent %d requests", n)
	}
}

// The front listener serves only clients with a certificate from the
// messenger's CA: one from another CA, or none, gets no TLS connection, and
// the front handler served without TLS refuses every request.
func TestFrontListenerRequiresTheMessengersCA(t *testing.T) {
	st, _, _ := testAccounts(t)
	dev := newStub("a")
	s, _ := testServer(t, Config{Store: st, Devices: []Device{dev}})
	f := newTestFront(t)
	fts := f.serve(s)
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})

	other := newTestFront(t) // another messenger's CA (or an attacker's)
	if code, b, err := frontDo(t, f.httpClient(&other.client), http.MethodPost, fts.URL+"/v1/vault", "bob", body, nil); err == nil {
		t.Fatalf("a client certificate from another CA was served: %d %s", code, b)
	}
	if code, b, err := frontDo(t, f.httpClient(nil), http.MethodPost, fts.URL+"/v1/vault", "bob", body, nil); err == nil {
		t.Fatalf("a client without a certificate was served: %d %s", code, b)
	}
	// A cofferd certificate is no front client's either (another CA).
	if code, b, err := frontDo(t, f.httpClient(&f.serverCert), http.MethodPost, fts.URL+"/v1/vault", "bob", body, nil); err == nil {
		t.Fatalf("cofferd's own certificate was served as a front client: %d %s", code, b)
	}
	// The front handler on a listener without TLS: refused.
	plain := httptest.NewServer(s.FrontHandler())
	defer plain.Close()
	code, b, err := frontDo(t, http.DefaultClient, http.MethodPost, plain.URL+"/v1/vault", "bob", body, nil)
	if err != nil || code != http.StatusForbidden {
		t.Fatalf("the front handler without TLS: %d %s %v", code, b, err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("refused clients reached the device %d times", n)
	}
	if _, err := st.AccountByName(context.Background(), "f.bob"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("refused clients made an account: %v", err)
	}
	// The messenger's backend is served.
	if code, b, err := frontDo(t, f.httpClient(&f.client), http.MethodPost, fts.URL+"/v1/vault", "bob", body, nil); err != nil || code != 200 {
		t.Fatalf("the backend: %d %s %v", code, b, err)
	}
}

// A fronted user id equal to a token account's name is another account:
// the prefix keeps them apart, token accounts cannot take a prefixed name,
// and a token account that has one anyway (an old store) is not served as
// the fronted user.
func TestFrontUserCannotReachTokenAccount(t *testing.T) {
	st, accts, tokens := testAccounts(t, "alice")
	ctx := context.Background()
	// carol's token account from before the prefix was reserved.
	legacy := Account{Name: "f.carol", UserID: []byte("carol's user id!"), TokenSHA256: [32]byte{1, 2, 3}}
	if err := st.AddAccount(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	dev := newStub("a")
	s, ts := testServer(t, Config{Store: st, Devices: []Device{dev}})
	f := newTestFront(t)
	fts := f.serve(s)
	c := f.httpClient(&f.client)

	info := frontInfo(t, c, fts.URL, "alice")
	if info.UserID == hex.EncodeToString(accts["alice"].UserID) {
		t.Fatal("the fronted user alice is the token account alice")
	}
	a, err := st.AccountByName(ctx, "f.alice")
	if err != nil || hex.EncodeToString(a.UserID) != info.UserID {
		t.Fatalf("fronted alice is not account f.alice: %v", err)
	}
	// Fronted alice's login start for the token account's user id: refused.
	code, b, err := frontDo(t, c, http.MethodPost, fts.URL+"/v1/vault", "alice", loginStart(t, accts["alice"].UserID), nil)
	if err != nil || code != http.StatusForbidden {
		t.Fatalf("fronted alice naming token alice's user id: %d %s %v", code, b, err)
	}
	// Token alice still is herself.
	resp, b := get(t, ts.URL+"/v1/account", tokens["alice"])
	var tinfo AccountInfo
	if resp.StatusCode != 200 || json.Unmarshal(b, &tinfo) != nil || tinfo.UserID != hex.EncodeToString(accts["alice"].UserID) {
		t.Fatalf("token alice: %d %s", resp.StatusCode, b)
	}
	// No token account in the fronted namespace.
	if _, _, err := NewAccount(ctx, st, "f.dave", ""); err == nil {
		t.Fatal("a token account named f.dave was made")
	}
	// The legacy one is not served as fronted carol.
	code, b, err = frontDo(t, c, http.MethodPost, fts.URL+"/v1/vault", "carol", loginStart(t, legacy.UserID), nil)
	if err != nil || code != http.StatusForbidden {
		t.Fatalf("fronted carol reached the token account f.carol: %d %s %v", code, b, err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("the device was sent %d requests", n)
	}
}

// The front listener takes no bearer token (a backend passing its user's
// token along is told so) and no malformed user id.
func TestFrontListenerRefusesTokensAndBadUsers(t *testing.T) {
	st, _, tokens := testAccounts(t, "alice")
	dev := newStub("a")
	s, _ := testServer(t, Config{Store: st, Devices: []Device{dev}})
	f := newTestFront(t)
	fts := f.serve(s)
	c := f.httpClient(&f.client)
	body := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	for _, user := range []string{"alice", ""} {
		code, b, err := frontDo(t, c, http.MethodPost, fts.URL+"/v1/vault", user, body, map[string]string{"Authorization": "Bearer " + tokens["alice"]})
		if err != nil || code != http.StatusBadRequest {
			t.Fatalf("a bearer token on the front listener (user %q): %d %s %v", user, code, b, err)
		}
	}
	for _, bad := range []string{"-alice", ".x", "a:b", "a b", "a/b", "é", strings.Repeat("x", 65), "a\x00"} {
		req, _ := http.NewRequest(http.MethodPost, fts.URL+"/v1/vault", bytes.NewReader(body))
		req.Header[FrontUserHeader] = []string{bad}
		resp, err := c.Do(req)
		if err != nil {
			continue // refused by the client library: never sent
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("user id %q: %d", bad, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, fts.URL+"/v1/vault", bytes.NewReader(body))
	req.Header[FrontUserHeader] = []string{"alice", "bob"}
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("two user ids: %v %v", resp, err)
	}
	// No header: 401, nothing made.
	code, b, err := frontDo(t, c, http.MethodPost, fts.URL+"/v1/vault", "", body, nil)
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("no user id: %d %s %v", code, b, err)
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("the device was sent %d requests", n)
	}
	all, _ := st.ListAccounts(context.Background(), "", 100)
	if len(all) != 1 {
		t.Fatalf("accounts: %v", all)
	}
	// Unauthenticated endpoints are served as on the public listener.
	if code, _, err := frontDo(t, c, http.MethodGet, fts.URL+"/healthz", "", nil, nil); err != nil || code != 200 {
		t.Fatalf("/healthz on the front listener: %d %v", code, err)
	}
}

// firstLookups is the realm's store as the hosts see it, whose first n
// lookups of name all find it missing and answer together: every first
// request races to make the account.
type firstLookups struct {
	state.Store
	name    string
	n       int
	mu      sync.Mutex
	arrived int
	gate    chan struct{}
}

func (v *firstLookups) AccountByName(ctx context.Context, name string) (Account, error) {
	a, err := v.Store.AccountByName(ctx, name)
	if name != v.name {
		return a, err
	}
	v.mu.Lock()
	v.arrived++
	k := v.arrived
	if k == v.n {
		close(v.gate)
	}
	v.mu.Unlock()
	if k <= v.n {
		select {
		case <-v.gate:
		case <-time.After(5 * time.Second):
		}
	}
	return a, err
}

// Many first requests for one user id, at two hosts of a realm at once,
// make one account with one user id, placed once; the host without its
// device forwards to the other as for a token account.
func TestConcurrentFirstFrontRequestsMakeOneAccount(t *testing.T) {
	const n = 16
	r := newTestRealm(t)
	view := &firstLookups{Store: r.st, name: "f.newuser", n: n, gate: make(chan struct{})}
	h1 := r.addHost("h1", Config{Store: view}, newStub("a"))
	h2 := r.addHost("h2", Config{Store: view}, newStub("b"))
	f := newTestFront(t)
	urls := []string{f.serve(h1.srv).URL, f.serve(h2.srv).URL}
	c := f.httpClient(&f.client)
	infos := make([]AccountInfo, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, b, err := frontDo(t, c, http.MethodGet, urls[i%2]+"/v1/account", "newuser", nil, nil)
			if err == nil && (code != 200 || json.Unmarshal(b, &infos[i]) != nil) {
				err = fmt.Errorf("%d %s", code, b)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if infos[i] != infos[0] {
			t.Fatalf("request %d saw %+v, request 0 %+v", i, infos[i], infos[0])
		}
	}
	all, err := r.st.ListAccounts(context.Background(), "", 100)
	if err != nil || len(all) != 1 || all[0].Name != "f.newuser" || hex.EncodeToString(all[0].UserID) != infos[0].UserID || all[0].Device != infos[0].Device {
		t.Fatalf("accounts after the race: %+v %v (answers %+v)", all, err, infos[0])
	}
	devs, _ := r.st.Devices(context.Background())
	var placed uint64
	for _, d := range devs {
		placed += d.Accounts
	}
	if placed != 1 {
		t.Fatalf("%d placements counted", placed)
	}
	made := testutilCounter(t, h1.srv, "cofferd_front_accounts_created_total", nil) + testutilCounter(t, h2.srv, "cofferd_front_accounts_created_total", nil)
	if made != 1 {
		t.Fatalf("%v accounts made", made)
	}
	// The other host forwarded.
	other := h1
	if infos[0].Device == "a" {
		other = h2
	}
	if fw := testutilCounter(t, other.srv, "cofferd_forwarded_requests_total", map[string]string{"peer": map[*testHost]string{h1: "h2", h2: "h1"}[other], "code": "200"}); fw < 1 {
		t.Fatalf("%s forwarded %v requests", other.name, fw)
	}
}

// A fronted user registers and logs in with a software vault through the
// front listener, and gets its key back; its login starts are rate limited
// as a token account's.
func TestFrontedUserRegistersAndLogsIn(t *testing.T) {
	st, _, _ := testAccounts(t)
	inst, pub, _ := softVault(t)
	s, _ := testServer(t, Config{Store: st, Devices: []Device{NewSoftDevice("soft", inst.Vault)}, LoginRate: 1.0 / 3600, LoginBurst: 2})
	f := newTestFront(t)
	fts := f.serve(s)
	c := f.httpClient(&f.client)
	info := frontInfo(t, c, fts.URL, "4711")
	uid, _ := hex.DecodeString(info.UserID)
	rt := func(ctx context.Context, req []byte) ([]byte, error) {
		code, b, err := frontDo(t, c, http.MethodPost, fts.URL+"/v1/vault", "4711", req, nil)
		if err == nil && code != 200 {
			err = &httpError{status: code, body: string(b)}
		}
		return b, err
	}
	id, err := testclient.FetchIdentity(context.Background(), rt, pub)
	if err != nil {
		t.Fatal(err)
	}
	user := &testclient.Client{RoundTrip: rt, Identity: id, UserID: uid}
	registerLoginRelease(t, user, "the front")
	// The burst is 2 (register spends none, the login above one): the
	// second login start is the last one allowed.
	if _, _, err := user.Login(context.Background(), []byte("wrong")); err == nil {
		t.Fatal("a wrong password logged in")
	}
	_, _, err = user.Login(context.Background(), []byte("correct horse"))
	if statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("third login start within the burst of 2: %v", err)
	}
}

// FuzzFrontUser feeds Coffer-Front-User values (one, or two split at a
// NUL) to its parser: it accepts exactly one value of 1 to 64 of
// A-Z a-z 0-9 . _ @ + -, starting with a letter or digit, and the account
// it names is a valid one in the fronted namespace.
func FuzzFrontUser(f *testing.F) {
	for _, s := range []string{"", "alice", "4711", "f.bob", "a:b", "-x", ".x", "x y", "é", "a\x00b",
		strings.Repeat("a", 64), strings.Repeat("a", 65), "user@example.org", "A+B_c-d.e", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		vals := strings.Split(v, "\x00")
		h[FrontUserHeader] = vals
		id, err := parseFrontUser(h)
		want := len(vals) == 1 && len(v) >= 1 && len(v) <= 64
		for i := 0; want && i < len(v); i++ {
			c := v[i]
			alnum := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
			want = alnum || (i > 0 && strings.IndexByte("._@+-", c) >= 0)
		}
		if (err == nil) != want {
			t.Fatalf("%q: accepted %v, want %v (%v)", v, err == nil, want, err)
		}
		if err != nil {
			return
		}
		if id != v {
			t.Fatalf("%q parsed as %q", v, id)
		}
		name := state.FrontPrefix + id
		if !state.IsFrontName(name) || state.CheckAccount(Account{Name: name, UserID: []byte{1}}) != nil {
			t.Fatalf("%q: account %q refused by the stores", v, name)
		}
	})
}
