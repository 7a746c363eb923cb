package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
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
// meant. A forwarded request carries the account's name in
// Coffer-Peer-Account, which only the peer listener reads, and only on a
// verified connection; the public API never reads it. Hosts are trusted
// with routing, not with vault content, which stays sealed end to end.

const (
	// peerAccountHeader names the account a forwarded request is for.
	peerAccountHeader = "Coffer-Peer-Account"
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
)

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
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return PeerConfig{}, fmt.Errorf("peer CA %s: no PEM certificate", caFile)
	}
	return PeerConfig{URL: url, Cert: &cert, CA: pool}, nil
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

// verifyPeer checks a peer's chain against the CA, for usage, and that its
// certificate names want.
func verifyPeer(certs []*x509.Certificate, ca *x509.CertPool, usage x509.ExtKeyUsage, want string) error {
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

// clientTLS is the TLS of a connection to the peer named host.
func (p PeerConfig) clientTLS(host string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*p.Cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"http/1.1"},
		// The chain and the name are checked by VerifyConnection, against
		// the peer CA alone and the host name meant (which need not be in
		// the peer URL), instead of the system roots and the URL's host.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, p.CA, x509.ExtKeyUsageServerAuth, host)
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
		caller, err := PeerName(r.TLS.VerifiedChains[0][0])
		if err == nil && r.Header.Get(peerHostHeader) != caller {
			err = fmt.Errorf("the certificate names host %q, the request says %q", caller, r.Header.Get(peerHostHeader))
		}
		if err != nil {
			defer s.record(r, o, start)
			o.status, o.note = http.StatusForbidden, err.Error()
			writeError(w, o.status, "peer: "+err.Error(), "")
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
		r.RemoteAddr = r.Header.Get(peerClientHeader) + " via " + caller
		r.Header.Del(peerAccountHeader)
		r.Header.Del(peerHostHeader)
		r.Header.Del(peerClientHeader)
		ctx := context.WithValue(r.Context(), peerKey{}, &peerContext{from: caller})
		ctx = context.WithValue(ctx, peerAccountKey{}, &a)
		s.handler.ServeHTTP(w, r.WithContext(ctx))
	})
}

// peerState is what this host saw of its forwards to one peer.
type peerState struct {
	client  *http.Client
	url     string
	lastErr string // of the last forward, "" when it got an answer
	at      time.Time
}

// peerSet holds one client per peer host (the name its certificate must
// bear is part of the client's TLS) and the outcome of the last forward.
type peerSet struct {
	mu    sync.Mutex
	peers map[string]*peerState
}

func (p *peerSet) client(s *Server, host string) *http.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.peers == nil {
		p.peers = map[string]*peerState{}
	}
	ps := p.peers[host]
	if ps == nil {
		ps = &peerState{}
		p.peers[host] = ps
	}
	if ps.client == nil {
		ps.client = &http.Client{
			Transport: &http.Transport{
				TLSClientConfig:     s.cfg.Peer.clientTLS(host),
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 5 * time.Second,
			},
			// A peer's redirect is not followed: its answer is relayed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return ps.client
}

func (p *peerSet) note(host string, err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.peers[host]; ps != nil {
		ps.lastErr, ps.at = "", now
		if err != nil {
			ps.lastErr = err.Error()
		}
	}
}

// lastError returns the error of the last forward to host, "" if it was
// answered or none was made.
func (p *peerSet) lastError(host string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.peers[host]; ps != nil {
		return ps.lastErr
	}
	return ""
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

// forwardedHeaders are the request headers a forward carries: never
// Authorization (the peer trusts this host's word for the account instead).
var forwardedHeaders = []string{"Content-Type", "Accept"}

// relayedHeaders are the answer headers relayed back to the client.
var relayedHeaders = []string{"Content-Type", "Retry-After", "Cache-Control", "Allow"}

// forward sends the request to the host of the account's device and relays
// its answer. It is not retried: a login start spent there counts. (Go's
// transport resends only what the peer cannot have received, or a GET, which
// changes nothing, on a kept-alive connection the peer closed: never a
// POST, PUT or DELETE.)
func (s *Server) forward(w http.ResponseWriter, r *http.Request, a *Account, d state.Device, o *outcome) {
	o.note = "forwarded to " + d.Host
	unreachable := func(why error) {
		o.status, o.note = http.StatusServiceUnavailable, "forward to "+d.Host+": "+why.Error()
		writeError(w, o.status, fmt.Sprintf("the host holding this account's vault device (%s, device %s) is unreachable; retry later", d.Host, d.Name), retryUnreachable)
	}
	if s.cfg.Peer.Cert == nil || s.cfg.Peer.CA == nil {
		unreachable(errors.New("this host has no peer certificate (-peer-cert, -peer-key, -peer-ca)"))
		s.realmMetrics.forwarded(d.Host, "unreachable", 0)
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
		s.realmMetrics.forwarded(d.Host, "unreachable", 0)
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
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+5*time.Second)
	defer cancel()
	url := strings.TrimSuffix(h.PeerURL, "/") + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		url += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, url, bytes.NewReader(body))
	if err != nil {
		unreachable(err)
		return
	}
	for _, k := range forwardedHeaders {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(peerAccountHeader, a.Name)
	req.Header.Set(peerHostHeader, s.cfg.HostName)
	req.Header.Set(peerClientHeader, r.RemoteAddr)
	start := time.Now()
	resp, err := s.peers.client(s, d.Host).Do(req)
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
			o.status, o.note = 499, "client gone while forwarding"
			return
		}
		s.peers.note(d.Host, err, time.Now())
		s.realmMetrics.forwarded(d.Host, "unreachable", time.Since(start))
		unreachable(err)
		return
	}
	s.peers.note(d.Host, nil, time.Now())
	s.realmMetrics.forwarded(d.Host, strconv.Itoa(resp.StatusCode), time.Since(start))
	for _, k := range relayedHeaders {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cofferd"`)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
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
			Help: "Requests forwarded to the host of the account's device, by peer host and the HTTP status it answered (unreachable: no answer).",
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
