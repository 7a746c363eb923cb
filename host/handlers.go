package host

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cofferhsm/coffer/protocol"
)

// Config configures a Server. Zero values take the defaults shown.
type Config struct {
	Devices  []Device  // at least one; the first is the default device of accounts that name none
	Accounts *Accounts // required

	Timeout  time.Duration // per vault request, queueing included: 10 s
	Queue    int           // requests waiting per device before 503: 256 (negative: none may wait)
	InFlight int           // requests in flight per device: 64

	LoginRate  float64 // login starts per second per account; 0: no limit
	LoginBurst int     // login starts an account may make at once: 5

	PollInterval time.Duration // status poll of each device (anchor writes): 15 s; negative: never

	// MaxConnections bounds the HTTP connections open at once on a
	// listener prepared by Listener (Serve does), idle keep-alive ones
	// included; more are answered 503 and closed: DefaultMaxConnections.
	MaxConnections int

	Log *slog.Logger     // slog.Default(); never given a body
	Now func() time.Time // time.Now
}

// Defaults of Config and of cofferd's flags.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultQueue        = 256
	DefaultInFlight     = 64
	DefaultLoginBurst   = 5
	DefaultPollInterval = 15 * time.Second
)

// DefaultLoginRate is 10 login starts per minute per account.
const DefaultLoginRate = 10.0 / 60

// Server is cofferd's HTTP side: accounts, routing to devices, backpressure
// and observability. Create it with New, serve Handler (or call Serve), and
// Close it to close the devices.
type Server struct {
	cfg      Config
	log      *slog.Logger
	devices  []*deviceQueue
	byName   map[string]*deviceQueue
	limiter  *limiter
	metrics  *metrics
	handler  http.Handler
	identReq []byte

	pollCancel context.CancelFunc
	pollWG     sync.WaitGroup
	closeOnce  sync.Once
}

// deviceQueue bounds the requests cofferd sends to one device: at most
// cap(slots) in flight, at most maxWaiting waiting for a slot, the rest
// refused at once (explicit backpressure, never an unbounded queue).
type deviceQueue struct {
	dev        Device
	slots      chan struct{}
	maxWaiting int64
	waiting    atomic.Int64
	inFlight   atomic.Int64
	polled     atomic.Pointer[polledState]
}

// polledState is what the poller learned from the device's own replies.
type polledState struct {
	connection   uint64 // DeviceInfo.Connects when learned
	identity     *protocol.Identity
	status       *protocol.Status
	statusErr    string
	notProvision bool
}

func (q *deviceQueue) info() DeviceInfo {
	if d, ok := q.dev.(interface{ Describe() DeviceInfo }); ok {
		return d.Describe()
	}
	return DeviceInfo{}
}

// insecure reports whether the device is known to be insecure, from what it
// says it is (DeviceInfo) or from its identity bundle.
func (q *deviceQueue) insecure() (insecure, known bool) {
	if q.info().Insecure {
		return true, true
	}
	if p := q.polled.Load(); p != nil && p.identity != nil {
		return p.identity.Insecure, true
	}
	return false, false
}

var (
	errQueueFull    = errors.New("device queue full")
	errQueueTimeout = errors.New("timed out waiting in the device queue; nothing was sent")
)

// do sends one request through the device's bounds.
func (q *deviceQueue) do(ctx context.Context, req []byte) ([]byte, error) {
	if !q.dev.Connected() {
		return nil, fmt.Errorf("%w: %s", ErrDisconnected, q.dev.Name())
	}
	select {
	case q.slots <- struct{}{}:
	default:
		if q.waiting.Add(1) > q.maxWaiting {
			q.waiting.Add(-1)
			return nil, errQueueFull
		}
		select {
		case q.slots <- struct{}{}:
			q.waiting.Add(-1)
		case <-ctx.Done():
			q.waiting.Add(-1)
			return nil, fmt.Errorf("%w (%v)", errQueueTimeout, ctx.Err())
		}
	}
	defer func() { <-q.slots }()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w (%v)", errQueueTimeout, err)
	}
	q.inFlight.Add(1)
	defer q.inFlight.Add(-1)
	return q.dev.RoundTrip(ctx, req)
}

// New checks cfg and starts polling the devices' status.
func New(cfg Config) (*Server, error) {
	if len(cfg.Devices) == 0 {
		return nil, errors.New("host: no vault device")
	}
	if cfg.Accounts == nil {
		return nil, errors.New("host: no accounts")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Queue < 0 {
		cfg.Queue = 0
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultInFlight
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = DefaultLoginBurst
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		byName:  map[string]*deviceQueue{},
		limiter: newLimiter(cfg.LoginRate, cfg.LoginBurst, cfg.Now),
	}
	for _, d := range cfg.Devices {
		if _, dup := s.byName[d.Name()]; dup {
			return nil, fmt.Errorf("host: device %q twice", d.Name())
		}
		q := &deviceQueue{dev: d, slots: make(chan struct{}, cfg.InFlight), maxWaiting: int64(cfg.Queue)}
		s.devices = append(s.devices, q)
		s.byName[d.Name()] = q
		if q.info().Insecure {
			s.log.Warn("INSECURE vault device: clients must refuse it unless told --insecure", "device", d.Name())
		}
	}
	for _, a := range cfg.Accounts.All() {
		if a.Device != "" && s.byName[a.Device] == nil {
			s.log.Error("account routed to a device that is not configured; its requests will fail", "account", a.Name, "device", a.Device)
		}
	}
	s.identReq, _ = protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	s.metrics = newMetrics(s)

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/vault", s.handleVault)
	mux.HandleFunc("/v1/identity", s.handleIdentity)
	mux.HandleFunc("/v1/account", s.handleAccount)
	mux.HandleFunc("/healthz", s.handleHealth)
	mux.Handle("/metrics", s.MetricsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint", "")
	})
	s.handler = mux

	ctx, cancel := context.WithCancel(context.Background())
	s.pollCancel = cancel
	if cfg.PollInterval > 0 {
		for _, q := range s.devices {
			s.pollWG.Add(1)
			go s.poll(ctx, q)
		}
	}
	return s, nil
}

// Handler serves the whole API (API.md), /healthz and /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves /metrics alone, for a separate listener.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}

// HealthHandler serves /healthz alone, for a separate listener.
func (s *Server) HealthHandler() http.Handler { return http.HandlerFunc(s.handleHealth) }

// Close stops polling and closes every device. Call it after the HTTP
// server has finished its requests (Serve does not close devices).
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.pollCancel()
		s.pollWG.Wait()
		for _, q := range s.devices {
			if err := q.dev.Close(); err != nil {
				errs = append(errs, fmt.Errorf("device %s: %w", q.dev.Name(), err))
			}
		}
	})
	return errors.Join(errs...)
}

// HTTPServer returns an http.Server for h with cofferd's timeouts: headers
// in 10 s, a whole request body in 30 s, and a reply written within the vault
// timeout plus 10 s.
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.Timeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// ShutdownGrace is how long Serve waits for requests in flight after ctx
// is done: the vault timeout plus 5 s.
func (s *Server) ShutdownGrace() time.Duration { return s.cfg.Timeout + 5*time.Second }

// Serve serves the API on ln (bounded by Listener, without TLS) until ctx
// is done, then shuts down gracefully: it stops accepting, lets requests in
// flight finish (up to ShutdownGrace) and returns. It does not close the
// devices: call Close after.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return ServeGracefully(ctx, s.HTTPServer(s.Handler()), s.Listener(ln, nil), s.ShutdownGrace())
}

// ServeGracefully runs srv on ln until ctx is done, then shuts it down,
// waiting up to grace for requests in flight; after that it closes the
// connections still open (a client that does not read its response must
// not hold a handler past the shutdown).
func ServeGracefully(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// ---- HTTP handlers ----

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, retry string) {
	if retry != "" {
		w.Header().Set("Retry-After", retry)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cofferd"`)
	}
	writeJSON(w, status, errorBody{Error: msg})
}

// outcome is what a handler did, for metrics and the request log.
type outcome struct {
	typ     string
	status  int
	account string
	device  string
	note    string // for the log: why, never a body
}

func (s *Server) record(r *http.Request, o *outcome, start time.Time) {
	d := time.Since(start)
	s.metrics.requests.WithLabelValues(o.typ, strconv.Itoa(o.status)).Inc()
	s.metrics.requestSeconds.WithLabelValues(o.typ).Observe(d.Seconds())
	level := slog.LevelDebug
	if o.status >= 500 {
		level = slog.LevelWarn
	}
	if s.log.Enabled(r.Context(), level) {
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "type", o.typ,
			"status", o.status, "account", o.account, "device", o.device, "duration", d, "note", o.note)
	}
}

// authenticate finds the request's account, or answers 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, o *outcome) *Account {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		o.status, o.note = http.StatusUnauthorized, "no bearer token"
		writeError(w, o.status, "missing bearer token", "")
		return nil
	}
	a, ok := s.cfg.Accounts.Authenticate(strings.TrimSpace(token))
	if !ok {
		o.status, o.note = http.StatusUnauthorized, "unknown token"
		writeError(w, o.status, "unknown token", "")
		return nil
	}
	o.account = a.Name
	return a
}

// deviceFor returns the account's device, or answers 500.
func (s *Server) deviceFor(w http.ResponseWriter, a *Account, o *outcome) *deviceQueue {
	q := s.devices[0]
	if a.Device != "" {
		q = s.byName[a.Device]
	}
	if q == nil {
		o.status, o.note = http.StatusInternalServerError, "account's device not configured"
		writeError(w, o.status, fmt.Sprintf("this account's device %q is not configured", a.Device), "")
		return nil
	}
	o.device = q.dev.Name()
	return q
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string, o *outcome) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	o.status = http.StatusMethodNotAllowed
	writeError(w, o.status, "method not allowed", "")
	return false
}

// Retry-After values, in seconds.
const (
	retryQueueFull    = "1"
	retryDisconnected = "2"
)

// relay sends req to the device and answers with the vault's reply, or
// with cofferd's own error.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, q *deviceQueue, reqType protocol.Type, req []byte, o *outcome) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	reply, err := q.do(ctx, req)
	dev := q.dev.Name()
	if err != nil {
		var reason string
		switch {
		case errors.Is(err, errQueueFull):
			reason = "queue_full"
			o.status = http.StatusServiceUnavailable
			writeError(w, o.status, "the vault device is busy: its queue is full", retryQueueFull)
		case errors.Is(err, errQueueTimeout):
			reason = "queue_timeout"
			o.status = http.StatusServiceUnavailable
			writeError(w, o.status, "the vault device is busy: timed out in its queue; nothing was sent", retryQueueFull)
		case errors.Is(err, ErrDisconnected):
			reason = "disconnected"
			o.status = http.StatusServiceUnavailable
			writeError(w, o.status, "the vault device is disconnected or rebooting; a login restarts at KE1", retryDisconnected)
		case errors.Is(err, context.DeadlineExceeded):
			reason = "timeout"
			o.status = http.StatusGatewayTimeout
			writeError(w, o.status, "the vault did not answer in time; the request may have been processed", "")
		case r.Context().Err() != nil:
			reason = "client_gone"
			o.status = 499 // the client went away; nobody reads this
		default:
			reason = "error"
			o.status = http.StatusBadGateway
			writeError(w, o.status, "the vault device failed", "")
		}
		s.metrics.deviceFailures.WithLabelValues(dev, reason).Inc()
		o.note = err.Error()
		return
	}
	info := inspectReply(reqType, reply)
	if info.errCode != 0 {
		s.metrics.vaultErrors.WithLabelValues(dev, codeLabel(info.errCode)).Inc()
		o.note = "vault error " + codeLabel(info.errCode)
	}
	if info.locked {
		s.metrics.lockouts.Inc()
	}
	o.status = http.StatusOK
	w.Header().Set("Content-Type", "application/cbor")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(http.StatusOK)
	w.Write(reply)
}

func (s *Server) handleVault(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "invalid"}
	defer s.record(r, o, start)
	if !allowMethod(w, r, http.MethodPost, o) {
		return
	}
	a := s.authenticate(w, r, o)
	if a == nil {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/cbor" {
			o.status = http.StatusUnsupportedMediaType
			writeError(w, o.status, "the body must be application/cbor", "")
			return
		}
	}
	if r.ContentLength > protocol.MaxMessageSize {
		o.status = http.StatusRequestEntityTooLarge
		writeError(w, o.status, fmt.Sprintf("body over %d bytes", protocol.MaxMessageSize), "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, protocol.MaxMessageSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			o.status = http.StatusRequestEntityTooLarge
			writeError(w, o.status, fmt.Sprintf("body over %d bytes", protocol.MaxMessageSize), "")
			return
		}
		o.status, o.note = http.StatusBadRequest, "reading body: "+err.Error()
		writeError(w, o.status, "could not read the body", "")
		return
	}
	route, err := ParseRoute(body)
	if err != nil {
		o.status = http.StatusBadRequest
		if errors.Is(err, ErrNotRelayed) {
			o.status, o.note = http.StatusForbidden, "a provisioning request"
		}
		writeError(w, o.status, err.Error(), "")
		return
	}
	o.typ = route.Type.String()
	if route.UserID != nil && string(route.UserID) != string(a.UserID) {
		o.status, o.note = http.StatusForbidden, "another account's user id"
		writeError(w, o.status, "the request names another account's user id", "")
		return
	}
	if route.Type == protocol.TypeLoginStart {
		if ok, wait := s.limiter.allow(a.Name); !ok {
			s.metrics.rateLimited.Inc()
			o.status = http.StatusTooManyRequests
			writeError(w, o.status, "too many login starts for this account", retryAfter(wait))
			return
		}
	}
	q := s.deviceFor(w, a, o)
	if q == nil {
		return
	}
	s.relay(w, r, q, route.Type, body, o)
}

func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: protocol.TypeIdentity.String()}
	defer s.record(r, o, start)
	if !allowMethod(w, r, http.MethodGet, o) {
		return
	}
	a := s.authenticate(w, r, o)
	if a == nil {
		return
	}
	q := s.deviceFor(w, a, o)
	if q == nil {
		return
	}
	s.relay(w, r, q, protocol.TypeIdentity, s.identReq, o)
}

// AccountInfo is the body of GET /v1/account.
type AccountInfo struct {
	UserID string `json:"user_id"`
	Device string `json:"device"`
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "account"}
	defer s.record(r, o, start)
	if !allowMethod(w, r, http.MethodGet, o) {
		return
	}
	a := s.authenticate(w, r, o)
	if a == nil {
		return
	}
	q := s.deviceFor(w, a, o)
	if q == nil {
		return
	}
	o.status = http.StatusOK
	writeJSON(w, o.status, AccountInfo{UserID: hex.EncodeToString(a.UserID), Device: q.dev.Name()})
}

// Health is the body of GET /healthz.
type Health struct {
	Status   string                  `json:"status"` // ok, degraded (some device down) or down (none connected)
	Devices  map[string]DeviceHealth `json:"devices"`
	Warnings []string                `json:"warnings,omitempty"`
}

// DeviceHealth is one device in Health.
type DeviceHealth struct {
	Connected     bool    `json:"connected"`
	Insecure      *bool   `json:"insecure"` // null until known
	Queue         int64   `json:"queue"`
	InFlight      int64   `json:"in_flight"`
	Kind          string  `json:"kind,omitempty"`
	Provisioned   *bool   `json:"provisioned,omitempty"`
	StoreSequence *uint64 `json:"store_sequence,omitempty"`
	AnchorWrites  *uint64 `json:"anchor_writes,omitempty"`
}

// Health reports the devices' state.
func (s *Server) Health() Health {
	h := Health{Devices: map[string]DeviceHealth{}}
	up := 0
	for _, q := range s.devices {
		name := q.dev.Name()
		info := q.info()
		dh := DeviceHealth{Connected: q.dev.Connected(), Queue: q.waiting.Load(), InFlight: q.inFlight.Load(), Kind: info.Kind}
		if dh.Connected {
			up++
		}
		if ins, known := q.insecure(); known {
			dh.Insecure = &ins
			if ins {
				h.Warnings = append(h.Warnings, fmt.Sprintf("device %s is an INSECURE vault (software vault or emulator); for development and tests only", name))
			}
		}
		if p := q.polled.Load(); p != nil {
			if p.identity != nil || p.notProvision {
				prov := !p.notProvision
				dh.Provisioned = &prov
			}
			if p.status != nil {
				dh.StoreSequence, dh.AnchorWrites = &p.status.StoreSequence, &p.status.AnchorWrites
			}
		}
		h.Devices[name] = dh
	}
	switch {
	case up == 0:
		h.Status = "down"
	case up < len(s.devices):
		h.Status = "degraded"
	default:
		h.Status = "ok"
	}
	return h
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	o := &outcome{typ: "healthz"}
	if !allowMethod(w, r, http.MethodGet, o) {
		return
	}
	h := s.Health()
	status := http.StatusOK
	if h.Status == "down" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// ---- status polling ----

// poll asks the device for its identity (once per connection) and its
// signed status (every PollInterval), for /healthz and the anchor write
// gauge. A stream device that leaves two polls in a row unanswered is reset:
// a UART stays open while the firmware behind it reboots, and its requests
// in flight would otherwise wait for their timeouts.
func (s *Server) poll(ctx context.Context, q *deviceQueue) {
	defer s.pollWG.Done()
	tick := time.NewTicker(min(250*time.Millisecond, s.cfg.PollInterval))
	defer tick.Stop()
	var last time.Time
	var lastConn uint64
	timeouts := 0
	for {
		if q.dev.Connected() {
			conn := q.info().Connects
			if conn != lastConn || time.Since(last) >= s.cfg.PollInterval {
				last, lastConn = time.Now(), conn
				if s.pollOnce(ctx, q, conn) {
					timeouts = 0
				} else if ctx.Err() == nil {
					timeouts++
					if r, ok := q.dev.(interface{ Reset() }); ok && timeouts >= 2 {
						s.log.Warn("vault device does not answer status polls; dropping its connection", "device", q.dev.Name())
						r.Reset()
						timeouts = 0
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollOnce returns false when the device did not answer in time.
func (s *Server) pollOnce(ctx context.Context, q *deviceQueue, conn uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	name := q.dev.Name()
	old := q.polled.Load()
	st := &polledState{connection: conn}
	if old != nil && old.connection == conn {
		*st = *old
	}
	if st.identity == nil {
		reply, err := q.dev.RoundTrip(ctx, s.identReq)
		if err != nil {
			return !errors.Is(err, context.DeadlineExceeded)
		}
		var signed protocol.SignedIdentity
		err = protocol.Decode(reply, protocol.TypeIdentity, &signed)
		var id protocol.Identity
		if err == nil {
			err = protocol.Unmarshal(signed.Body, &id)
		}
		switch {
		case errors.Is(err, &protocol.Error{Code: protocol.CodeNotProvisioned}):
			if !st.notProvision {
				s.log.Warn("vault device is not provisioned: it has no signed identity bundle", "device", name)
			}
			st.notProvision = true
		case err != nil:
			s.log.Warn("vault device sent an unreadable identity", "device", name, "err", err)
		default:
			st.identity, st.notProvision = &id, false
			level, msg := slog.LevelInfo, "vault device identity"
			if id.Insecure {
				// Said as loudly as the configuration-time warning above:
				// a software vault or emulator is only known from here.
				level, msg = slog.LevelWarn, "INSECURE vault device identity: clients must refuse it unless told --insecure"
			}
			s.log.Log(ctx, level, msg, "device", name, "vault_name", id.Name,
				"insecure", id.Insecure, "max_limit", id.MaxLimit, "signing_key", hex.EncodeToString(id.SigningKey))
		}
	}
	// A fresh nonce per poll: the vault signs it back, so a status that a
	// link or a stale device replays is refused, not shown as current.
	sreq := protocol.NewStatusRequest()
	statusReq, _ := protocol.Encode(protocol.TypeStatus, sreq)
	reply, err := q.dev.RoundTrip(ctx, statusReq)
	if err != nil {
		q.polled.Store(st)
		return !errors.Is(err, context.DeadlineExceeded)
	}
	var sr protocol.StatusReply
	var status *protocol.Status
	if err = protocol.Decode(reply, protocol.TypeStatus, &sr); err == nil {
		if st.identity == nil {
			err = errors.New("no identity to verify the status with")
		} else {
			status, err = sr.Verify(ed25519.PublicKey(st.identity.SigningKey), sreq.Nonce)
		}
	}
	if err != nil {
		if st.statusErr != err.Error() {
			s.log.Warn("vault status unusable", "device", name, "err", err)
		}
		// What /healthz and the metrics showed came from an earlier
		// status; without a fresh one, nothing is vouched for.
		st.status, st.statusErr = nil, err.Error()
	} else {
		st.status, st.statusErr = status, ""
		s.metrics.anchorWrites.WithLabelValues(name).Set(float64(status.AnchorWrites))
		s.metrics.storeSequence.WithLabelValues(name).Set(float64(status.StoreSequence))
	}
	q.polled.Store(st)
	return true
}
