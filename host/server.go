package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cofferhsm/coffer/protocol"
)

// Server is cofferd's HTTP side: accounts, routing to devices, backpressure
// and observability. Create it with New, serve Handler (or call Serve), and
// Close it to close the devices.
type Server struct {
	cfg      Config
	log      *slog.Logger
	devices  []*deviceQueue
	byName   map[string]*deviceQueue
	events   *eventLog
	metrics  *metrics
	handler  http.Handler
	identReq []byte

	refused chan error // RefuseInsecure: the first insecure device seen

	instance     string      // this process's id in its host's registry entry
	cache        *realmCache // the store's answers, for a second (realm.go)
	peers        peerSet     // clients of the other hosts (peer.go)
	realmMetrics *realmMetrics

	pollCancel context.CancelFunc
	pollWG     sync.WaitGroup
	closeOnce  sync.Once
}

// New checks cfg and starts polling the devices' status.
func New(cfg Config) (*Server, error) {
	if len(cfg.Devices) == 0 {
		return nil, errors.New("host: no vault device")
	}
	if cfg.Store == nil {
		return nil, errors.New("host: no state store")
	}
	if cfg.HostName == "" {
		cfg.HostName = "local"
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
	if cfg.BucketPruneInterval == 0 {
		cfg.BucketPruneInterval = time.Hour
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = DefaultLoginBurst
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PeerInFlight <= 0 {
		cfg.PeerInFlight = DefaultPeerInFlight
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var inst [8]byte
	if _, err := rand.Read(inst[:]); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		instance: hex.EncodeToString(inst[:]),
		log:      cfg.Log,
		byName:   map[string]*deviceQueue{},
		cache:    newRealmCache(),
		refused:  make(chan error, 1),
		events:   newEventLog(cfg.Log, cfg.Now),
	}
	for _, d := range cfg.Devices {
		if _, dup := s.byName[d.Name()]; dup {
			return nil, fmt.Errorf("host: device %q twice", d.Name())
		}
		q := &deviceQueue{dev: d, slots: make(chan struct{}, cfg.InFlight), maxWaiting: int64(cfg.Queue)}
		s.devices = append(s.devices, q)
		s.byName[d.Name()] = q
		if q.info().Insecure {
			s.insecureDevice(d.Name())
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), cfg.Timeout)
	err := s.register(rctx)
	rcancel()
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	s.checkRollbacks()
	s.identReq, _ = protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	s.metrics = newMetrics(s)
	s.realmMetrics = newRealmMetrics(s, s.metrics.reg)

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/vault", s.handleVault)
	mux.HandleFunc("/v1/identity", s.handleIdentity)
	mux.HandleFunc("/v1/account", s.handleAccount)
	mux.HandleFunc("/v1/rollbacks", s.handleRollbacks)
	mux.HandleFunc(realmsPrefix, s.handleRealms)
	mux.HandleFunc(logPrefix, s.handleLog)
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
		s.pollWG.Add(1)
		go s.heartbeats(ctx)
	}
	if cfg.LoginRate > 0 && cfg.BucketPruneInterval >= 0 {
		s.pollWG.Add(1)
		go s.pruneBuckets(ctx)
	}
	return s, nil
}

// handleLog serves the release log's files, without authentication: the
// log is public, and whoever reads it verifies it.
func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "log"}
	defer s.record(r, o, start)
	s.cfg.ReleaseLog.serve(w, r, o)
}

// Handler serves the whole API (API.md), /healthz and /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves /metrics alone, for a separate listener.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}

// HealthHandler serves /healthz alone, for a separate listener.
func (s *Server) HealthHandler() http.Handler { return http.HandlerFunc(s.handleHealth) }

// insecureDevice says that the device is insecure, as loudly as it must:
// a warning when insecure devices are allowed, an error and a refusal
// (Refused) when they are not.
func (s *Server) insecureDevice(name string, attrs ...any) {
	attrs = append([]any{"device", name}, attrs...)
	if !s.cfg.RefuseInsecure {
		s.log.Warn("INSECURE vault device: clients must refuse it unless told --insecure", attrs...)
		return
	}
	s.log.Error("INSECURE vault device (a software vault or an emulator): refusing to serve it", attrs...)
	select {
	case s.refused <- fmt.Errorf("vault device %s is INSECURE (a software vault or an emulator: its keys are files on this machine); "+
		"cofferd serves one only with -allow-insecure-vault (COFFERD_ALLOW_INSECURE_VAULT=true)", name):
	default:
	}
}

// Refused receives an error when Config.RefuseInsecure is set and a device
// turned out to be insecure: its requests are refused from then on, and
// cofferd stops.
func (s *Server) Refused() <-chan error { return s.refused }

// Close stops polling and closes every device. Call it after the HTTP
// server has finished its requests (Serve does not close devices).
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.pollCancel()
		s.pollWG.Wait()
		s.peers.close()
		s.signOff()
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
