// Command cofferd is Coffer's host daemon: it relays vault protocol
// messages between clients (HTTP, host/API.md) and vault devices, which it
// cannot read. It is not trusted; see host/OPERATIONS.md.
//
//	cofferd [serve] [flags]                          run the daemon
//	cofferd migrate [-db DSN] [-import-accounts FILE -host NAME [-default-device NAME]] create or upgrade the state database
//	cofferd account add|list|remove|unplace [-db DSN] …
//	cofferd device list|drain|activate|retire|limits [-db DSN] …
//	cofferd host list|remove [-db DSN] …
//	cofferd peer ca -out DIR | peer cert -ca DIR -host NAME -out DIR
//	cofferd vault declare-rollback [-db DSN] [-rollbacks FILE] [-device NAME] -reason TEXT
//	cofferd --version                                what it was built from
//
// Every flag may also be given in the environment as COFFERD_ and the flag
// name in upper case with '-' as '_' (-login-rate ⇔ COFFERD_LOGIN_RATE); a
// flag on the command line wins.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/internal/buildinfo"
	"github.com/cofferhsm/coffer/protocol/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil)
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err (if any) and returns the process's status: 0 for
// success and for help asked for, 2 for a mistake on the command line
// (said once, with the usage), 1 for any other failure.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "cofferd:", err)
		return 2
	}
	fmt.Fprintln(stderr, "cofferd:", err)
	return 1
}

// errUsage marks a mistake on the command line (status 2); its text is the
// short usage.
var errUsage = errors.New("usage: cofferd [serve] [flags] | cofferd migrate … | cofferd account … | cofferd device … | cofferd host … | cofferd peer … | cofferd vault declare-rollback … | cofferd --version (cofferd --help for more)")

// errHelpShown: the help asked for was printed (status 0).
var errHelpShown = errors.New("help shown")

// usage is the top of `cofferd --help`; the flags of the command follow.
const usage = `usage: cofferd [serve] [flags]                             run the daemon
       cofferd migrate [-db DSN] [-import-accounts FILE -host NAME [-default-device NAME]]
                                                           create or upgrade the state database; import a JSON accounts file
       cofferd account add     [-db DSN] [-device NAME] NAME  a new account; prints its bearer token once
       cofferd account list    [-db DSN]                   the accounts
       cofferd account remove  [-db DSN] NAME              remove an account (its vault record stays)
       cofferd account unplace [-db DSN] NAME              take an account off its device (it is placed again at its next request)
       cofferd device list     [-db DSN] [-json]           the realm's devices: host, state, accounts, records, capacity, health
       cofferd device drain|activate|retire [-db DSN] NAME no new accounts | new accounts again | out of service for good
       cofferd device evacuate [-db DSN] NAME              every account off a drained device (placed again at its next request)
       cofferd device limits   [-db DSN] [-capacity N] [-anchor-budget N] NAME
       cofferd host list       [-db DSN]                   the realm's hosts: peer URL, heartbeat, certificate key, removed
       cofferd host remove     [-db DSN] [-force] NAME     revoke a host's peer certificate; its devices serve nobody
       cofferd peer ca   -out DIR                          the realm's peer CA (ca.crt, ca.key)
       cofferd peer cert -ca DIR -host NAME -out DIR       a host's peer certificate from that CA
       cofferd vault declare-rollback [-db DSN] [-rollbacks FILE] [-device NAME] -reason TEXT
                                                           the vault's store went back or was lost: say so to its users
       cofferd --version                                   what this cofferd was built from

Every flag may also be given in the environment as COFFERD_ and the flag name
in upper case with '-' as '_' (-login-rate: COFFERD_LOGIN_RATE); a flag on the
command line wins. -db is the realm's state: sqlite:PATH (one host; the default
is sqlite:cofferd.db) or postgres://… (several hosts share it); memory:
keeps it in the process (tests). See host/API.md and host/OPERATIONS.md.
`

// run is main without the process: ready, if not nil, is told the
// addresses the daemon listens on (tests).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(api, metrics net.Addr)) error {
	if len(args) > 0 && buildinfo.IsVersionFlag(args[0]) {
		fmt.Fprint(stdout, buildinfo.Line("cofferd"))
		return nil
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "serve":
			return serve(ctx, args[1:], getenv, stdout, stderr, ready)
		case "account":
			return account(ctx, args[1:], getenv, stdout)
		case "device":
			return device(ctx, args[1:], getenv, stdout)
		case "host":
			return hostCmd(ctx, args[1:], getenv, stdout)
		case "migrate":
			return migrate(ctx, args[1:], getenv, stdout)
		case "peer":
			return peer(args[1:], getenv, stdout)
		case "vault":
			return vault(args[1:], getenv, stdout)
		case "help":
			return serve(ctx, []string{"-h"}, getenv, stdout, stderr, ready)
		}
		return fmt.Errorf("unknown command %q; %w", args[0], errUsage)
	}
	return serve(ctx, args, getenv, stdout, stderr, ready)
}

// showHelp prints a command's help, its usage then its flags, to stdout.
func showHelp(stdout io.Writer, fs *flag.FlagSet, usage string) error {
	fmt.Fprint(stdout, usage)
	fmt.Fprintln(stdout, "\nFlags:")
	fs.SetOutput(stdout)
	fs.PrintDefaults()
	return errHelpShown
}

// envFallback sets every flag not given on the command line from
// COFFERD_<NAME>, if that is set.
func envFallback(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := "COFFERD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

// parse parses flags that may come before, between and after positional
// arguments (`account add -accounts F NAME -device D`), then applies the
// environment fallbacks, and returns the positional arguments.
// A flag the set does not define is a usage error, said once (the flag
// package's own output is discarded); -h or --help prints help to stdout.
func parse(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer, help string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, showHelp(stdout, fs, help)
		} else if err != nil {
			return nil, fmt.Errorf("%v; %w", err, errUsage)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, envFallback(fs, getenv)
}

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(api, metrics net.Addr)) error {
	fs := flag.NewFlagSet("cofferd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8420", "HTTP address of the API")
	metricsListen := fs.String("metrics-listen", "", "separate address for /metrics and /healthz (default: served on -listen too)")
	dsn := fs.String("db", defaultDSN, "the realm's state database: sqlite:PATH, postgres://… (shared by the realm's hosts) or memory: (tests)")
	hostName := fs.String("host", "", "this host's name in the realm, unique to this process (its devices are registered under it; its peer certificate names it) (default: os.Hostname())")
	peerListen := fs.String("peer-listen", "", "address of the peer listener, where the realm's other hosts forward requests (mutual TLS) (default: none)")
	peerURL := fs.String("peer-url", "", "URL the other hosts dial to reach -peer-listen (default: https:// and -peer-listen when it names a host)")
	peerCert := fs.String("peer-cert", "", "this host's certificate from the realm's peer CA (cofferd peer cert)")
	peerKey := fs.String("peer-key", "", "its private key")
	peerCA := fs.String("peer-ca", "", "the realm's peer CA certificate (exactly one, a CA)")
	frontListen := fs.String("front-listen", "", "address of the front listener, where the messenger's backend calls on its users' behalf, naming each in Coffer-Front-User (mutual TLS; host/OPERATIONS.md, \"Fronted by the messenger\") (default: none)")
	frontCA := fs.String("front-ca", "", "the messenger's private CA certificate (exactly one, a CA): the front listener serves only clients with a certificate from it")
	frontCert := fs.String("front-cert", "", "the front listener's server certificate (PEM), one the messenger's backend trusts")
	frontKey := fs.String("front-key", "", "its private key (PEM)")
	peerInFlight := fs.Int("peer-inflight", host.DefaultPeerInFlight, "forwards in flight to each peer host; more are answered 503 at once")
	rollbacksPath := fs.String("rollbacks", "", "file of the operator's rollback declarations, served under /v1/rollbacks (cofferd vault declare-rollback) (default: cofferd-rollbacks.json beside a sqlite: -db, else in the working folder)")
	realmsDir := fs.String("realms", "", "folder of the accounts' realm manifests and resume blobs (public or sealed; created, locked while cofferd runs) (default: cofferd-realms beside a sqlite: -db, else in the working folder)")
	logDir := fs.String("log", "", "release log directory (tessera POSIX layout) to serve read-only under /v1/log/ (default: none, 404)")
	vaults := fs.String("vault", "", "vault devices, comma-separated [NAME=]unix:PATH | [NAME=]serial:PATH|auto (unnamed: vault0, vault1, …); required")
	timeout := fs.Duration("timeout", host.DefaultTimeout, "per vault request, waiting in the queue included")
	queue := fs.Int("queue", host.DefaultQueue, "requests waiting per device before 503")
	inflight := fs.Int("inflight", host.DefaultInFlight, "requests in flight per device (at most what the device serves at once)")
	loginRate := fs.String("login-rate", "10/m", "login starts per account (N/s, N/m, N/h; 0 for no limit)")
	loginBurst := fs.Int("login-burst", host.DefaultLoginBurst, "login starts an account may make at once")
	poll := fs.Duration("poll", host.DefaultPollInterval, "status poll interval of each device (anchor writes, health)")
	maxConns := fs.Int("max-conns", host.DefaultMaxConnections, "HTTP connections open at once per listener; more are answered 503 and closed")
	usbID := fs.String("usb-id", transport.DefaultUSBID.String(), "USB VID:PID that serial:auto looks for")
	logLevel := fs.String("log-level", "info", "debug (one line per request), info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	tlsCert := fs.String("tls-cert", "", "serve the API over TLS with this certificate (PEM; with -tls-key)")
	tlsKey := fs.String("tls-key", "", "the certificate's private key (PEM)")
	allowInsecure := fs.Bool("allow-insecure-vault", false, "serve a vault whose identity says it is insecure (a software vault or QEMU: tests and development only); without it cofferd stops when it finds one")
	version := fs.Bool("version", false, "print what this cofferd was built from, and exit")
	if pos, err := parse(fs, args, getenv, stdout, usage); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected %q; %w", pos[0], errUsage)
	}
	if *version {
		fmt.Fprint(stdout, buildinfo.Line("cofferd"))
		return nil
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return fmt.Errorf("-log-format: want text or json, got %q", *logFormat)
	}
	rate, err := host.ParseRate(*loginRate)
	if err != nil {
		return fmt.Errorf("-login-rate: %w", err)
	}
	id, err := transport.ParseUSBID(*usbID)
	if err != nil {
		return fmt.Errorf("-usb-id: %w", err)
	}
	specs, err := host.ParseDeviceSpecs(*vaults)
	if err != nil {
		return fmt.Errorf("-vault: %w", err)
	}
	if *timeout <= 0 || *inflight <= 0 || *queue < 0 || *loginBurst <= 0 {
		return errors.New("-timeout, -inflight and -login-burst must be positive, -queue not negative")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	var tlsConfig *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	q := *queue
	if q == 0 {
		q = -1 // Config: none may wait
	}

	if *hostName == "" {
		if *hostName, err = os.Hostname(); err != nil {
			return fmt.Errorf("-host: %w", err)
		}
		// os.Hostname may be the short name: two machines named node1.a
		// and node1.b would then share a host name (and its device
		// names), which the registry refuses while both run; OPERATIONS.md
		// says to set -host.
		if err := state.CheckHostName(*hostName); err != nil {
			return fmt.Errorf("this machine's host name does not do as a realm host name (%v): set -host", err)
		}
	}
	if err := state.CheckHostName(*hostName); err != nil {
		return fmt.Errorf("-host: %w", err)
	}
	if *peerURL != "" {
		if err := host.CheckPeerURL(*peerURL); err != nil {
			return fmt.Errorf("-peer-url: %w: peers are reached only over mutual TLS", err)
		}
	}
	if *peerInFlight <= 0 {
		return errors.New("-peer-inflight must be positive")
	}
	var frontTLS *tls.Config
	if *frontListen != "" || *frontCA != "" || *frontCert != "" || *frontKey != "" {
		if *frontListen == "" || *frontCA == "" || *frontCert == "" || *frontKey == "" {
			return errors.New("-front-listen, -front-ca, -front-cert and -front-key go together")
		}
		if frontTLS, err = host.LoadFrontTLS(*frontCert, *frontKey, *frontCA); err != nil {
			return fmt.Errorf("-front-cert/-front-key/-front-ca: %w", err)
		}
	}
	var peerCfg host.PeerConfig
	if *peerCert != "" || *peerKey != "" || *peerCA != "" {
		if *peerCert == "" || *peerKey == "" || *peerCA == "" {
			return errors.New("-peer-cert, -peer-key and -peer-ca go together")
		}
		if peerCfg, err = host.LoadPeerConfig(*peerURL, *peerCert, *peerKey, *peerCA); err != nil {
			return err
		}
		if name, err := host.PeerName(peerCfg.Cert.Leaf); err != nil || name != *hostName {
			return fmt.Errorf("-peer-cert names host %q (%v), but this host is %q (-host)", name, err, *hostName)
		}
	}
	if *peerListen != "" {
		if peerCfg.Cert == nil {
			return errors.New("-peer-listen needs -peer-cert, -peer-key and -peer-ca")
		}
		if peerCfg.URL == "" {
			h, _, err := net.SplitHostPort(*peerListen)
			if ip := net.ParseIP(h); err != nil || h == "" || (ip != nil && ip.IsUnspecified()) {
				return errors.New("-peer-listen listens on every address: say with -peer-url which one the other hosts dial")
			}
		}
	}

	st, err := state.Open(ctx, *dsn)
	if errors.Is(err, state.ErrSchema) {
		return fmt.Errorf("%s: %w: run `cofferd migrate -db %s` first (once per realm, before starting its hosts)", redactDSN(*dsn), err, redactDSN(*dsn))
	}
	if err != nil {
		return fmt.Errorf("-db %s: %w", redactDSN(*dsn), err)
	}
	defer st.Close()

	dir := stateDir(*dsn)
	if *rollbacksPath == "" {
		*rollbacksPath = host.DefaultRollbacksPath(filepath.Join(dir, "cofferd.db"))
	}
	if err := host.CreateRollbacksFile(*rollbacksPath); err != nil {
		log.Warn("could not create an empty rollbacks file", "file", *rollbacksPath, "err", err)
	}
	if *realmsDir == "" {
		// Beside the SQLite file: the state folder under systemd, RUNDIR
		// under `make run`.
		*realmsDir = filepath.Join(dir, "cofferd-realms")
	}
	log.Info("starting cofferd", "listen", *listen, "host", *hostName, "db", redactDSN(*dsn), "devices", len(specs), "realms", *realmsDir, "peer_listen", *peerListen, "peer_url", peerCfg.URL, "front_listen", *frontListen)
	realms, err := host.OpenRealmStore(*realmsDir)
	if err != nil {
		return fmt.Errorf("-realms: %w", err)
	}
	defer realms.Close()

	var releaseLog *host.ReleaseLog
	if *logDir != "" {
		if releaseLog, err = host.OpenReleaseLog(*logDir); err != nil {
			return fmt.Errorf("-log: %w", err)
		}
		defer releaseLog.Close()
		log.Info("serving the release log read-only under /v1/log/", "dir", *logDir)
	}

	// The peer listener first: its address is the URL registered at start.
	var pln net.Listener
	var peerTLS *tls.Config
	if *peerListen != "" {
		if peerTLS, err = peerCfg.PeerServerTLS(); err == nil {
			pln, err = listenTCP("tcp", *peerListen)
		}
		if err != nil {
			return fmt.Errorf("-peer-listen: %w", err)
		}
		defer pln.Close()
		if peerCfg.URL == "" {
			peerCfg.URL = "https://" + pln.Addr().String()
		}
	}

	devices := host.OpenDevices(specs, host.OpenOptions{USBID: id, Log: log})
	srv, err := host.New(host.Config{
		Devices: devices, Store: st, HostName: *hostName, Peer: peerCfg, Realms: realms, ReleaseLog: releaseLog, Rollbacks: *rollbacksPath, Timeout: *timeout, Queue: q, InFlight: *inflight,
		LoginRate: rate, LoginBurst: *loginBurst, PollInterval: *poll, MaxConnections: *maxConns, PeerInFlight: *peerInFlight, Log: log,
		RefuseInsecure: !*allowInsecure,
	})
	if err != nil {
		for _, d := range devices {
			d.Close()
		}
		return err
	}
	defer func() {
		if err := srv.Close(); err != nil {
			log.Error("closing devices", "err", err)
		}
		log.Info("stopped")
	}()

	ln, err := listenTCP("tcp", *listen)
	if err != nil {
		return err
	}
	ln = srv.Listener(ln, tlsConfig) // -max-conns, then TLS
	var mln net.Listener
	if *metricsListen != "" {
		if mln, err = listenTCP("tcp", *metricsListen); err != nil {
			ln.Close()
			return err
		}
		mln = srv.Listener(mln, nil)
	}
	if pln != nil {
		pln = srv.Listener(pln, peerTLS)
		log.Info("peer listener", "addr", pln.Addr().String(), "url", peerCfg.URL)
	}
	var fln net.Listener
	if frontTLS != nil {
		if fln, err = listenTCP("tcp", *frontListen); err != nil {
			ln.Close()
			if mln != nil {
				mln.Close()
			}
			return fmt.Errorf("-front-listen: %w", err)
		}
		fln = srv.Listener(fln, frontTLS)
		log.Info("front listener: the messenger's backend names its users (mutual TLS)", "addr", fln.Addr().String())
	}
	if ready != nil {
		var maddr net.Addr
		if mln != nil {
			maddr = mln.Addr()
		}
		ready(ln.Addr(), maddr)
	}
	log.Info("listening", "api", ln.Addr().String(), "tls", tlsConfig != nil, "metrics", *metricsListen)
	if tlsConfig == nil {
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
			log.Warn("serving bearer tokens over plain HTTP on a non-loopback address: use -tls-cert/-tls-key or a TLS proxy in front")
		}
	}

	ctx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	errc := make(chan error, 4)
	api, frontAPI := srv.Handler(), srv.FrontHandler()
	if mln != nil {
		// Metrics only on their own address; health on all (for load
		// balancers in front of the API).
		api, frontAPI = withoutMetrics(api), withoutMetrics(frontAPI)
	}
	go func() { errc <- host.ServeGracefully(ctx, srv.HTTPServer(api), ln, srv.ShutdownGrace()) }()
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", srv.MetricsHandler())
		mux.Handle("/healthz", srv.HealthHandler())
		go func() {
			errc <- host.ServeGracefully(ctx, srv.HTTPServer(mux), mln, time.Second)
		}()
	}
	if pln != nil {
		go func() { errc <- host.ServeGracefully(ctx, srv.HTTPServer(srv.PeerHandler()), pln, srv.ShutdownGrace()) }()
	}
	if fln != nil {
		go func() {
			errc <- host.ServeGracefully(ctx, srv.HTTPServer(frontAPI), fln, srv.ShutdownGrace())
		}()
	}
	var refused error
	select {
	case err = <-errc:
	case refused = <-srv.Refused():
		// An insecure vault nobody allowed: stop, as gracefully as for a
		// signal (its requests are already refused).
		stopServing()
		err = <-errc
	}
	if ctx.Err() != nil {
		log.Info("shutting down: stopped accepting, finished requests in flight")
	}
	// One server stopped (a signal, or its listener failed): stop the
	// others, whose errors the loop below waits for.
	stopServing()
	for _, extra := range []net.Listener{mln, pln, fln} {
		if extra == nil {
			continue
		}
		if err2 := <-errc; err == nil || errors.Is(err, http.ErrServerClosed) {
			err = err2
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if refused != nil {
		return refused
	}
	return err
}

// listenTCP opens the daemon's listeners (a variable for tests).
var listenTCP = net.Listen

// withoutMetrics answers /metrics 404: they are on -metrics-listen.
func withoutMetrics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"metrics are served on the metrics address"}`+"\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// declareRollbackUsage is `cofferd vault declare-rollback --help`.
const declareRollbackUsage = `usage: cofferd vault declare-rollback [-db DSN] [-rollbacks FILE] [-device NAME] -reason TEXT

Records that the device's store went back to an older state or was lost, and
serves it to that device's users under GET /v1/rollbacks; their clients show it
in ` + "`coffer vault recover-rollback`" + `. Declare only what you will not restore
(host/OPERATIONS.md, "Recovering from a rollback").
`

// vault runs `cofferd vault declare-rollback`: the operator's statement
// that a device's store went back to an older state or was lost, served
// to the users of that device (host/OPERATIONS.md, "Recovering from a
// rollback").
func vault(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no vault command; %w", errUsage)
	}
	switch args[0] {
	case "declare-rollback":
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, usage)
		return errHelpShown
	default:
		return fmt.Errorf("unknown vault command %q; %w", args[0], errUsage)
	}
	fs := flag.NewFlagSet("cofferd vault declare-rollback", flag.ContinueOnError)
	dsn := fs.String("db", "", "the daemon's -db (or COFFERD_DB), sqlite:PATH: the rollbacks file is beside it unless -rollbacks says otherwise")
	path := fs.String("rollbacks", "", "rollbacks file (default: cofferd-rollbacks.json beside the sqlite: -db)")
	device := fs.String("device", "vault0", "the device whose store went back (its name in -vault)")
	reason := fs.String("reason", "", "what happened, shown to every user of the device: restored from which backup, or the store lost (required)")
	pos, err := parse(fs, args[1:], getenv, stdout, declareRollbackUsage)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected %q; %w", pos[0], errUsage)
	}
	if *path == "" {
		// No default: run from another folder than the daemon's, the
		// declaration would go to a file the daemon never serves.
		if kind, _, err := state.ParseDSN(*dsn); err != nil || kind != "sqlite" {
			return fmt.Errorf("cofferd vault declare-rollback needs -rollbacks FILE, or -db sqlite:PATH or PATH.db (or COFFERD_DB) beside which the daemon keeps it; %w", errUsage)
		}
		*path = host.DefaultRollbacksPath(filepath.Join(stateDir(*dsn), "cofferd.db"))
	}
	if *reason == "" {
		return fmt.Errorf("cofferd vault declare-rollback needs -reason TEXT; %w", errUsage)
	}
	d, err := host.DeclareRollback(*path, *device, *reason, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "declared: device %s's store was rolled back or lost (%s)\n  reason  %s\n  file    %s\n\n"+
		"A running cofferd serves it at once under GET /v1/rollbacks. Users whose clients stop with ROLLBACK\n"+
		"see it when they run `coffer vault recover-rollback`, which accepts the vault's state only on their word\n"+
		"and moves their key to a new password. Declare only what you will not restore: restoring the latest\n"+
		"state, if you have it, needs nothing from them.\n",
		d.Device, d.DeclaredAt.Format(time.RFC3339), d.Reason, *path)
	return nil
}
