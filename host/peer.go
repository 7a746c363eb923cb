package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// The hosts of a realm forward to each other over mutual TLS: every host
// holds a certificate from the realm's private peer CA that names it (its
// DNS name, or its common name when it has none), the peer listener
// requires one and takes the caller's host name from it, and a host
// dialling a peer checks that the certificate it is shown names the host it
// meant. Both ends also require the certificate's key to be the one the
// host registered in the store (its SHA-256 of SubjectPublicKeyInfo), and
// refuse a removed host: `cofferd host remove` revokes a certificate. A
// forwarded request carries the account's name in Coffer-Peer-Account and
// its user id in Coffer-Peer-User, which only the peer listener reads, and
// only on a verified connection; the public API never reads them. Hosts are
// trusted with routing, not with vault content, which stays sealed end to
// end.

const (
	// peerAccountHeader names the account a forwarded request is for.
	peerAccountHeader = "Coffer-Peer-Account"
	// peerUserHeader is the user id (hex) of the account as the forwarding
	// host looked it up: the home host answers 502 when its account of
	// that name has another (removed and made again since).
	peerUserHeader = "Coffer-Peer-User"
	// peerHostHeader names the host that forwards; it must be the name in
	// that host's certificate.
	peerHostHeader = "Coffer-Peer-Host"
	// peerClientHeader carries the client's address, for the home host's
	// logs (the rate-limit and lockout events name it).
	peerClientHeader = "Coffer-Peer-Client"
	// maxForwardBody bounds a forwarded request body: the largest a vault
	// request or a realm item may be.
	maxForwardBody = max(protocol.MaxMessageSize, MaxRealmBlobSize, MaxRealmManifestSize)
	// maxForwardReply bounds a peer's answer.
	maxForwardReply = 1 << 20
	// peerDialTimeout bounds a connection to a peer, TLS handshake apart.
	peerDialTimeout = 5 * time.Second
	// breakerFailures consecutive forwards to a peer without an answer
	// open its breaker: forwards there fail at once for breakerOpen, then
	// one probe is let through, whose answer closes it.
	breakerFailures = 5
	breakerOpen     = 5 * time.Second
)

// DefaultPeerInFlight is how many forwards to one peer may be in flight at
// once (Config.PeerInFlight): a slow peer holds at most that many of this
// host's connections.
const DefaultPeerInFlight = 64

// PeerConfig is how a host reaches its peers and how they reach it.
type PeerConfig struct {
	// URL is what the other hosts dial (https://ADDR of the peer
	// listener), registered in the store at start and with every
	// heartbeat.
	URL string
	// Cert is this host's certificate from the realm's peer CA, and CA
	// that CA. Without them the host forwards nothing.
	Cert *tls.Certificate
	CA   *x509.CertPool
}

// LoadPeerConfig reads a host's peer certificate, its key and the CA's
// certificate (PEM files).
func LoadPeerConfig(url, certFile, keyFile, caFile string) (PeerConfig, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil && cert.Leaf == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		return PeerConfig{}, fmt.Errorf("peer certificate: %w", err)
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return PeerConfig{}, fmt.Errorf("peer CA: %w", err)
	}
	ca, err := parseCA(b, "the realm's peer CA (cofferd peer ca)")
	if err != nil {
		return PeerConfig{}, fmt.Errorf("peer CA %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return PeerConfig{URL: url, Cert: &cert, CA: pool}, nil
}

// parseCA reads a private CA (the realm's peer CA, the messenger's front
// CA, which what names): exactly one PEM certificate, a CA that signs
// certificates. A bundle is refused: every certificate in it would issue
// peers (or front clients).
func parseCA(b []byte, what string) (*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM %q block: want one CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	switch {
	case len(certs) != 1:
		return nil, fmt.Errorf("%d certificates: want exactly %s, not a bundle", len(certs), what)
	case !certs[0].BasicConstraintsValid || !certs[0].IsCA || certs[0].KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, errors.New("not a CA certificate (basic constraints CA and key usage cert sign)")
	}
	return certs[0], nil
}

// PeerKeyHash is what the registry holds of a peer certificate: the
// SHA-256 of its SubjectPublicKeyInfo. Nil for no certificate.
func PeerKeyHash(c *x509.Certificate) []byte {
	if c == nil {
		return nil
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:]
}

// checkPeerURL accepts only an https:// peer URL with a host: a plain
// http:// one would carry accounts' requests, unauthenticated, in the clear.
func checkPeerURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return errors.New("the peer URL does not parse")
	}
	if p.Scheme != "https" || p.Host == "" || p.User != nil {
		return errors.New("the peer URL is not https://HOST[:PORT]")
	}
	return nil
}

// CheckPeerURL checks a -peer-url.
func CheckPeerURL(u string) error {
	if err := checkPeerURL(u); err != nil {
		return fmt.Errorf("peer URL %q: %w", u, err)
	}
	return nil
}

// PeerName is the host a peer certificate names: its one DNS name, or its
// common name when it has no DNS name.
func PeerName(c *x509.Certificate) (string, error) {
	name := c.Subject.CommonName
	switch len(c.DNSNames) {
	case 0:
	case 1:
		name = c.DNSNames[0]
	default:
		return "", errors.New("peer certificate names several hosts")
	}
	if err := state.CheckHostName(name); err != nil {
		return "", fmt.Errorf("peer certificate: %w", err)
	}
	return name, nil
}

// errPeerIdentity is a peer whose certificate is not the one the registry
// holds for the host meant.
var errPeerIdentity = errors.New("peer identity")

// verifyPeer checks a peer's chain against the CA, for usage, that its
// certificate names want, and that its key is key (the registry's).
func verifyPeer(certs []*x509.Certificate, ca *x509.CertPool, usage x509.ExtKeyUsage, want string, key []byte) error {
	if err := verifyPeerName(certs, ca, usage, want); err != nil {
		return fmt.Errorf("%w: %v", errPeerIdentity, err)
	}
	if len(key) == 0 || !bytes.Equal(PeerKeyHash(certs[0]), key) {
		return fmt.Errorf("%w: the certificate's key is not the one host %q registered", errPeerIdentity, want)
	}
	return nil
}

func verifyPeerName(certs []*x509.Certificate, ca *x509.CertPool, usage x509.ExtKeyUsage, want string) error {
	if len(certs) == 0 {
		return errors.New("peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	got, err := PeerName(certs[0])
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("peer certificate names host %q, not %q", got, want)
	}
	return nil
}

// PeerServerTLS is the peer listener's TLS: this host's certificate, and a
// client certificate from the CA required of every caller.
func (p PeerConfig) PeerServerTLS() (*tls.Config, error) {
	if p.Cert == nil || p.CA == nil {
		return nil, errors.New("peer listener: needs -peer-cert, -peer-key and -peer-ca")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*p.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.CA,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// clientTLS is the TLS of a connection to the peer named host, whose
// registered key hash is key.
func (p PeerConfig) clientTLS(host string, key []byte) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*p.Cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"http/1.1"},
		// The chain and the name are checked by VerifyConnection, against
		// the peer CA alone and the host name meant (which need not be in
		// the peer URL), instead of the system roots and the URL's host.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, p.CA, x509.ExtKeyUsageServerAuth, host, key)
		},
	}
}

// peerContext is what the peer listener learned of a forwarded request.
type peerContext struct{ from string }

type peerKey struct{}

// peerOf returns the peer a request was forwarded by, or nil for a request
// from a client.
func peerOf(ctx context.Context) *peerContext {
	p, _ := ctx.Value(peerKey{}).(*peerContext)
	return p
}

type peerAccountKey struct{}

// peerAccountOf returns the account a forwarded request is for.
func peerAccountOf(ctx context.Context) *Account {
	a, _ := ctx.Value(peerAccountKey{}).(*Account)
	return a
}

// peerPaths are the endpoints a peer may forward to.
var peerPaths = []string{"/v1/vault", "/v1/identity", "/v1/account", "/v1/rollbacks", realmsPrefix}

// PeerHandler serves requests forwarded by the realm's other hosts. Serve
// it only on a listener with PeerServerTLS: it refuses every request that
// did not come with a client certificate verified against the peer CA.
func (s *Server) PeerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o := &outcome{typ: "peer"}
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			defer s.record(r, o, start)
			o.status, o.note = http.StatusForbidden, "peer without a verified certificate"
			writeError(w, o.status, "peer: a verified client certificate from the realm's peer CA is required", "")
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		caller, err := PeerName(leaf)
		if err == nil && r.Header.Get(peerHostHeader) != caller {
			err = fmt.Errorf("the certificate names host %q, the request says %q", caller, r.Header.Get(peerHostHeader))
		}
		if err == nil {
			err = s.registeredPeer(r.Context(), caller, leaf)
		}
		if err != nil {
			defer s.record(r, o, start)
			o.status, o.note = http.StatusForbidden, err.Error()
			retry := ""
			if errors.Is(err, errStore) {
				o.status, retry = http.StatusServiceUnavailable, retryStore
			}
			writeError(w, o.status, "peer: "+err.Error(), retry)
			return
		}
		allowed := false
		for _, p := range peerPaths {
			allowed = allowed || r.URL.Path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p))
		}
		if !allowed {
			defer s.record(r, o, start)
			o.status = http.StatusNotFound
			writeError(w, o.status, "peer: no such endpoint", "")
			return
		}
		name := r.Header.Get(peerAccountHeader)
		a, err := s.accountByName(r.Context(), name)
		if err != nil {
			defer s.record(r, o, start)
			o.status, o.note = http.StatusBadGateway, "forwarded for an unknown account: "+err.Error()
			if !errors.Is(err, state.ErrNotFound) {
				o.status = http.StatusServiceUnavailable
			}
			writeError(w, o.status, fmt.Sprintf("peer: no account %q here", name), "")
			return
		}
		if uid, err := hex.DecodeString(r.Header.Get(peerUserHeader)); err != nil || !bytes.Equal(uid, a.UserID) {
			defer s.record(r, o, start)
			o.status, o.note = http.StatusBadGateway, "forwarded for another account of the same name (removed and made again)"
			writeError(w, o.status, fmt.Sprintf("peer: the account %q here has another user id than the forwarding host's", name), "")
			return
		}
		r.RemoteAddr = r.Header.Get(peerClientHeader) + " via " + caller
		r.Header.Del(peerAccountHeader)
		r.Header.Del(peerUserHeader)
		r.Header.Del(peerHostHeader)
		r.Header.Del(peerClientHeader)
		ctx := context.WithValue(r.Context(), peerKey{}, &peerContext{from: caller})
		ctx = context.WithValue(ctx, peerAccountKey{}, &a)
		s.handler.ServeHTTP(w, r.WithContext(ctx))
	})
}

// registeredPeer checks that a verified peer certificate is the one its
// host registered: the host is in the registry, not removed, and the
// certificate's key hash is the registered one. Any other certificate of
// the CA (another name, a second certificate for a name, a removed host's)
// acts for nobody.
func (s *Server) registeredPeer(ctx context.Context, name string, c *x509.Certificate) error {
	h, ok, err := s.host(ctx, name)
	switch {
	case err != nil:
		return fmt.Errorf("%w: cannot check host %q", errStore, name)
	case !ok:
		return fmt.Errorf("host %q is not registered in the realm", name)
	case h.Removed:
		return fmt.Errorf("host %q was removed from the realm", name)
	case len(h.PeerKey) == 0 || !bytes.Equal(h.PeerKey, PeerKeyHash(c)):
		return fmt.Errorf("the certificate's key is not the one host %q registered", name)
	}
	return nil
}

// peerState is what this host saw of its forwards to one peer.
type peerState struct {
	client *http.Client
	key    []byte        // the registered key hash client's connections are checked against
	slots  chan struct{} // forwards in flight

	lastErr  string // class of the last forward's failure, "" when it got an answer
	failedAt time.Time
	failures int // consecutive forwards without an answer
	openTill time.Time
	probing  bool // the half-open breaker's one probe is out
}

// peerSet holds one client per peer host (the name its certificate must
// bear and its key are part of the client's TLS), a bound on the forwards
// in flight to it, and a breaker that fails forwards fast while it does not
// answer.
type peerSet struct {
	mu    sync.Mutex
	peers map[string]*peerState
}

// errPeerBusy and errBreakerOpen refuse a forward without a connection.
var (
	errPeerBusy    = errors.New("too many forwards in flight to this peer")
	errBreakerOpen = errors.New("the peer did not answer the last forwards; failing fast for a few seconds")
)

// acquire returns the client for host, whose registered key hash is key,
// and takes one of its slots (release it with done), or says why not.
func (p *peerSet) acquire(s *Server, host string, key []byte, now time.Time) (*peerState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.peers == nil {
		p.peers = map[string]*peerState{}
	}
	ps := p.peers[host]
	if ps == nil {
		ps = &peerState{slots: make(chan struct{}, s.cfg.PeerInFlight)}
		p.peers[host] = ps
	}
	if ps.client == nil || !bytes.Equal(ps.key, key) {
		if ps.client != nil {
			// A new key (a re-issued certificate): connections checked
			// against the old one are not reused.
			ps.client.CloseIdleConnections()
		}
		ps.key = bytes.Clone(key)
		ps.client = &http.Client{
			Transport: &http.Transport{
				TLSClientConfig:       s.cfg.Peer.clientTLS(host, ps.key),
				DialContext:           (&net.Dialer{Timeout: peerDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:   5 * time.Second,
				ResponseHeaderTimeout: s.cfg.Timeout + 2*time.Second,
				MaxIdleConnsPerHost:   s.cfg.PeerInFlight,
				MaxConnsPerHost:       s.cfg.PeerInFlight,
				IdleConnTimeout:       90 * time.Second,
			},
			// A peer's redirect is not followed: its answer is relayed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	open := ps.failures >= breakerFailures
	if open && (now.Before(ps.openTill) || ps.probing) {
		return nil, errBreakerOpen
	}
	select {
	case ps.slots <- struct{}{}:
	default:
		return nil, errPeerBusy
	}
	ps.probing = open // half open: this forward is the probe
	return ps, nil
}

// release frees a forward's slot (and its probe, when half open) and
// notes no outcome: for a forward that says nothing of the peer (its
// client left, or it was never sent).
func (p *peerSet) release(ps *peerState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	<-ps.slots
	ps.probing = false
}

// done releases a forward's slot and notes its outcome: err is nil when
// the peer answered.
func (p *peerSet) done(ps *peerState, err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	<-ps.slots
	ps.probing = false
	if err == nil {
		ps.lastErr, ps.failures = "", 0
		return
	}
	ps.lastErr, ps.failedAt = errorClass(err), now
	ps.failures++
	if ps.failures >= breakerFailures {
		ps.openTill = now.Add(breakerOpen)
	}
}

// errorClass says what kind of failure a forward met, without its URL
// (paths and queries name accounts' items): for /healthz, which anyone
// may read.
func errorClass(err error) string {
	var ne net.Error
	var ve *tls.CertificateVerificationError
	var ae tls.AlertError
	switch {
	case errors.Is(err, errPeerIdentity):
		return "peer certificate refused (not the registered one)"
	case errors.As(err, &ve), errors.As(err, &ae):
		return "TLS failed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "connection closed"
	}
	return "connection failed"
}

// unanswered reports whether forwards to host fail: the last one, within
// window of now, got no answer. It returns the failure's class. (A failure
// older than window is forgotten, so that a host whose devices hold no
// account yet, and so get no forward to prove it back, is not shunned for
// good.)
func (p *peerSet) unanswered(host string, now time.Time, window time.Duration) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.peers[host]; ps != nil && ps.lastErr != "" && now.Sub(ps.failedAt) < window {
		return ps.lastErr, true
	}
	return "", false
}

func (p *peerSet) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ps := range p.peers {
		if ps.client != nil {
			ps.client.CloseIdleConnections()
		}
	}
}

// forwardedHeaders are the request headers a forward carries from the
// client's request: never Authorization (the peer trusts this host's word
// for the account instead).
var forwardedHeaders = []string{"Content-Type", "Accept"}

// relayedHeaders are the answer headers relayed back to the client.
var relayedHeaders = []string{"Content-Type", "Retry-After", "Cache-Control", "Allow"}

// forward sends the request to the host of the account's device and relays
// its answer. It is not retried by cofferd: a login start spent there
// counts. Go's transport resends a request on a kept-alive connection only
// when none of its bytes were written (any method), or, for a GET or HEAD,
// when the peer closed the connection before answering; never a POST, PUT
// or DELETE it wrote. A 503 "unreachable" may follow a request that reached
// the vault (its answer timed out or was lost).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, a *Account, d state.Device, o *outcome) {
	o.note = "forwarded to " + d.Host
	// refuse answers without forwarding; code is the metric's: why no
	// forward was tried (busy, failing_fast, removed, unreachable).
	refuse := func(code string, why error, msg string) {
		o.status, o.note = http.StatusServiceUnavailable, "forward to "+d.Host+": "+why.Error()
		writeError(w, o.status, msg, retryUnreachable)
		s.realmMetrics.forwarded(d.Host, code, 0)
	}
	unreachable := func(why error) {
		refuse("unreachable", why, fmt.Sprintf("the host holding this account's vault device (%s, device %s) is unreachable; retry later", d.Host, d.Name))
	}
	if s.cfg.Peer.Cert == nil || s.cfg.Peer.CA == nil {
		unreachable(errors.New("this host has no peer certificate (-peer-cert, -peer-key, -peer-ca)"))
		return
	}
	h, ok, err := s.host(r.Context(), d.Host)
	switch {
	case err != nil:
		o.status, o.note = http.StatusServiceUnavailable, err.Error()
		writeError(w, o.status, errStore.Error(), retryStore)
		return
	case !ok || h.PeerURL == "":
		unreachable(errors.New("the host has no peer URL in the registry"))
		return
	case h.Removed:
		refuse("removed", errors.New("host removed"), fmt.Sprintf("host removed: the host holding this account's vault device (%s, device %s) was removed from the realm", d.Host, d.Name))
		return
	}
	if err := checkPeerURL(h.PeerURL); err != nil {
		unreachable(err)
		return
	}
	if len(h.PeerKey) == 0 {
		unreachable(errors.New("the host registered no peer certificate key"))
		return
	}
	var body []byte
	if r.Body != nil {
		if body, err = readBody(w, r, maxForwardBody); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				o.status = http.StatusRequestEntityTooLarge
				writeError(w, o.status, fmt.Sprintf("body over %d bytes", maxForwardBody), "")
				return
			}
			o.status, o.note = http.StatusBadRequest, "reading body: "+err.Error()
			writeError(w, o.status, "could not read the body", "")
			return
		}
	}
	ps, err := s.peers.acquire(s, d.Host, h.PeerKey, time.Now())
	if errors.Is(err, errPeerBusy) {
		refuse("busy", err, fmt.Sprintf("the host holding this account's vault device (%s, device %s) is busy: too many requests are forwarded to it; retry later", d.Host, d.Name))
		return
	}
	if errors.Is(err, errBreakerOpen) {
		refuse("failing_fast", err, fmt.Sprintf("the host holding this account's vault device (%s, device %s) is unreachable (its last forwards failed); retry later", d.Host, d.Name))
		return
	}
	if err != nil {
		unreachable(err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+5*time.Second)
	defer cancel()
	url := strings.TrimSuffix(h.PeerURL, "/") + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		url += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, url, bytes.NewReader(body))
	if err != nil {
		s.peers.release(ps) // nothing was sent: no word on the peer
		unreachable(err)
		return
	}
	for _, k := range forwardedHeaders {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(peerAccountHeader, a.Name)
	req.Header.Set(peerUserHeader, hex.EncodeToString(a.UserID))
	req.Header.Set(peerHostHeader, s.cfg.HostName)
	req.Header.Set(peerClientHeader, r.RemoteAddr)
	start := time.Now()
	resp, err := ps.client.Do(req)
	var reply []byte
	if err == nil {
		reply, err = io.ReadAll(io.LimitReader(resp.Body, maxForwardReply+1))
		resp.Body.Close()
		if err == nil && len(reply) > maxForwardReply {
			err = fmt.Errorf("answer over %d bytes", maxForwardReply)
		}
	}
	if err != nil {
		if r.Context().Err() != nil {
			s.peers.release(ps) // the client left: no word on the peer
			o.status, o.note = 499, "client gone while forwarding"
			return
		}
		s.peers.done(ps, err, time.Now())
		s.realmMetrics.forwarded(d.Host, "unreachable", time.Since(start))
		o.status, o.note = http.StatusServiceUnavailable, "forward to "+d.Host+": "+err.Error()
		writeError(w, o.status, fmt.Sprintf("the host holding this account's vault device (%s, device %s) is unreachable, or did not answer in time (the request may have reached the vault); retry later", d.Host, d.Name), retryUnreachable)
		return
	}
	s.peers.done(ps, nil, time.Now())
	s.realmMetrics.forwarded(d.Host, strconv.Itoa(resp.StatusCode), time.Since(start))
	for _, k := range relayedHeaders {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cofferd"`)
	}
	n := int64(len(reply))
	if r.Method == http.MethodHead && resp.ContentLength >= 0 {
		n = resp.ContentLength // a HEAD's answer says the length of the GET's
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	o.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	w.Write(reply)
}

// realmMetrics are the series of the realm: forwards, and the placement of
// accounts on every device of the realm (read from the store at scrape).
type realmMetrics struct {
	forwards       *prometheus.CounterVec   // peer, code
	forwardSeconds *prometheus.HistogramVec // peer
}

var placedDesc = prometheus.NewDesc("cofferd_device_accounts",
	"Accounts placed on each device of the realm, from the state store (every host shows every device).", []string{"device", "host", "state"}, nil)

func newRealmMetrics(s *Server, reg *prometheus.Registry) *realmMetrics {
	m := &realmMetrics{
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cofferd_forwarded_requests_total",
			Help: "Requests forwarded to the host of the account's device, by peer host and the HTTP status it answered, or why none was: unreachable (no answer, or no usable peer URL or key), busy (-peer-inflight reached), failing_fast (its last forwards failed), removed.",
		}, []string{"peer", "code"}),
		forwardSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cofferd_forward_seconds",
			Help:    "Time from forwarding a request to a peer host to its whole answer, by peer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"peer"}),
	}
	reg.MustRegister(m.forwards, m.forwardSeconds, placementCollector{s})
	return m
}

func (m *realmMetrics) forwarded(peer, code string, d time.Duration) {
	m.forwards.WithLabelValues(peer, code).Inc()
	if d > 0 {
		m.forwardSeconds.WithLabelValues(peer).Observe(d.Seconds())
	}
}

type placementCollector struct{ s *Server }

func (c placementCollector) Describe(ch chan<- *prometheus.Desc) { ch <- placedDesc }

func (c placementCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	devs, err := c.s.cfg.Store.Devices(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(placedDesc, err)
		return
	}
	for _, d := range devs {
		ch <- prometheus.MustNewConstMetric(placedDesc, prometheus.GaugeValue, float64(d.Accounts), d.Name, d.Host, string(d.State))
	}
}
