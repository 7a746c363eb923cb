// Command cofferd is Coffer's host daemon: it relays vault protocol
// messages between clients (HTTP, host/API.md) and vault devices, which it
// cannot read. It is not trusted; see host/OPERATIONS.md.
//
//	cofferd [serve] [flags]                                    run the daemon
//	cofferd account add    -accounts FILE [-device NAME] NAME  new account; prints its bearer token once
//	cofferd account list   -accounts FILE
//	cofferd account remove -accounts FILE NAME
//	cofferd vault declare-rollback -accounts FILE [-rollbacks FILE] [-device NAME] -reason TEXT
//	                                                           the vault's store went back or was lost: say so to its users
//	cofferd --version                                          what it was built from
//
// Every flag may also be given in the environment as COFFERD_ and the flag
// name in upper case with '-' as '_' (-login-rate ⇔ COFFERD_LOGIN_RATE); a
// flag on the command line wins.
package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
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
	"text/tabwriter"
	"time"

	"github.com/cofferhsm/coffer/host"
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
var errUsage = errors.New("usage: cofferd [serve] [flags] | cofferd account add|list|remove … | cofferd vault declare-rollback … | cofferd --version (cofferd --help for more)")

// errHelpShown: the help asked for was printed (status 0).
var errHelpShown = errors.New("help shown")

// usage is the top of `cofferd --help`; the flags of the command follow.
const usage = `usage: cofferd [serve] [flags]                                    run the daemon
       cofferd account add    -accounts FILE [-device NAME] NAME  a new account; prints its bearer token once
       cofferd account list   -accounts FILE                      the accounts
       cofferd account remove -accounts FILE NAME                 remove an account (its vault record stays)
       cofferd vault declare-rollback -accounts FILE [-rollbacks FILE] [-device NAME] -reason TEXT
                                                                  the vault's store went back or was lost: say so to its users
       cofferd --version                                          what this cofferd was built from

Every flag may also be given in the environment as COFFERD_ and the flag name
in upper case with '-' as '_' (-login-rate: COFFERD_LOGIN_RATE); a flag on the
command line wins. The account and vault commands work on the files the daemon
reads, so they need -accounts (or COFFERD_ACCOUNTS). See host/API.md and
host/OPERATIONS.md.
`

// accountUsage are the account commands' usage lines, by command.
var accountUsage = map[string]string{
	"add":    "usage: cofferd account add -accounts FILE [-device NAME] NAME\n\nMakes an account routed to the device NAME (default: the first configured) and prints its bearer token, once.\n",
	"list":   "usage: cofferd account list -accounts FILE\n\nLists the accounts of FILE; a FILE that does not exist is an error.\n",
	"remove": "usage: cofferd account remove -accounts FILE NAME\n\nRemoves an account; its vault record stays (only its owner can delete it).\n",
}

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
			return account(args[1:], getenv, stdout)
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
	accountsPath := fs.String("accounts", "cofferd-accounts.json", "accounts file (JSON; reloaded when it changes)")
	rollbacksPath := fs.String("rollbacks", "", "file of the operator's rollback declarations, served under /v1/rollbacks (cofferd vault declare-rollback) (default: cofferd-rollbacks.json beside the -accounts file)")
	realmsDir := fs.String("realms", "", "folder of the accounts' realm manifests and resume blobs (public or sealed; created, locked while cofferd runs) (default: cofferd-realms beside the -accounts file)")
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

	// Create an empty accounts file if there is none, so that it belongs to
	// the daemon's user and `cofferd account add` run as root keeps that.
	if _, err := os.Stat(*accountsPath); errors.Is(err, os.ErrNotExist) {
		if err := host.CreateAccountsFile(*accountsPath); err != nil {
			log.Warn("could not create an empty accounts file", "file", *accountsPath, "err", err)
		}
	}
	accounts, err := host.LoadAccounts(*accountsPath)
	if err != nil {
		return err
	}
	accounts.OnReload = func(n int, err error) {
		if err != nil {
			log.Error("accounts file unreadable; keeping the accounts loaded before", "file", *accountsPath, "err", err)
			return
		}
		log.Info("accounts reloaded", "file", *accountsPath, "accounts", n)
	}
	if *rollbacksPath == "" {
		*rollbacksPath = host.DefaultRollbacksPath(*accountsPath)
	}
	if err := host.CreateRollbacksFile(*rollbacksPath); err != nil {
		log.Warn("could not create an empty rollbacks file", "file", *rollbacksPath, "err", err)
	}
	log.Info("starting cofferd", "listen", *listen, "accounts", len(accounts.All()), "devices", len(specs), "realms", *realmsDir)

	if *realmsDir == "" {
		// Beside the accounts file: the state folder under systemd, RUNDIR
		// under `make run`.
		*realmsDir = filepath.Join(filepath.Dir(*accountsPath), "cofferd-realms")
	}
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

	devices := host.OpenDevices(specs, host.OpenOptions{USBID: id, Log: log})
	srv, err := host.New(host.Config{
		Devices: devices, Accounts: accounts, Realms: realms, ReleaseLog: releaseLog, Rollbacks: *rollbacksPath, Timeout: *timeout, Queue: q, InFlight: *inflight,
		LoginRate: rate, LoginBurst: *loginBurst, PollInterval: *poll, MaxConnections: *maxConns, Log: log,
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

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ln = srv.Listener(ln, tlsConfig) // -max-conns, then TLS
	var mln net.Listener
	if *metricsListen != "" {
		if mln, err = net.Listen("tcp", *metricsListen); err != nil {
			ln.Close()
			return err
		}
		mln = srv.Listener(mln, nil)
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
	errc := make(chan error, 2)
	api := srv.Handler()
	if mln != nil {
		// Metrics only on their own address; health on both (for load
		// balancers in front of the API).
		h := api
		api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"error":"metrics are served on the metrics address"}`+"\n")
				return
			}
			h.ServeHTTP(w, r)
		})
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
	if mln != nil {
		if err2 := <-errc; err == nil {
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

func account(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no account command; %w", errUsage)
	}
	cmd := args[0]
	help, ok := accountUsage[cmd]
	if !ok {
		if cmd == "-h" || cmd == "--help" || cmd == "-help" || cmd == "help" {
			fmt.Fprint(stdout, usage)
			return errHelpShown
		}
		return fmt.Errorf("unknown account command %q; %w", cmd, errUsage)
	}
	fs := flag.NewFlagSet("cofferd account "+cmd, flag.ContinueOnError)
	// No default: a command run from another folder than the daemon's
	// would work on a file the daemon never reads.
	path := fs.String("accounts", "", "the daemon's accounts file (required; or COFFERD_ACCOUNTS)")
	var device *string
	if cmd == "add" {
		device = fs.String("device", "", "vault device to route the account to (default: the first configured)")
	}
	pos, err := parse(fs, args[1:], getenv, stdout, help)
	if err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("cofferd account %s needs -accounts FILE (or COFFERD_ACCOUNTS): the accounts file the daemon reads; %w", cmd, errUsage)
	}
	switch cmd {
	case "add":
		if len(pos) != 1 {
			return fmt.Errorf("cofferd account add takes one NAME; %w", errUsage)
		}
		a, token, err := host.AddAccount(*path, pos[0], *device)
		if err != nil {
			return err
		}
		dev := a.Device
		if dev == "" {
			dev = "(the first configured device)"
		}
		fmt.Fprintf(stdout, "account %s\n  user id %s\n  device  %s\n  token   %s\n\nThe token is shown only this once: cofferd keeps only its SHA-256.\nClients send it as: Authorization: Bearer %s\n",
			a.Name, hex.EncodeToString(a.UserID), dev, token, token)
		return nil
	case "list":
		if len(pos) != 0 {
			return fmt.Errorf("cofferd account list takes no NAME; %w", errUsage)
		}
		// A file that is not there is a wrong path, not an empty list.
		if _, err := os.Stat(*path); err != nil {
			return fmt.Errorf("accounts file: %w", err)
		}
		accts, err := host.ListAccounts(*path)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tUSER ID\tDEVICE\tCREATED")
		for _, a := range accts {
			dev := a.Device
			if dev == "" {
				dev = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, hex.EncodeToString(a.UserID), dev, a.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	default: // remove
		if len(pos) != 1 {
			return fmt.Errorf("cofferd account remove takes one NAME; %w", errUsage)
		}
		if err := host.RemoveAccount(*path, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed account %s (its vault record stays; only its owner can delete it)\n", pos[0])
		return nil
	}
}

// declareRollbackUsage is `cofferd vault declare-rollback --help`.
const declareRollbackUsage = `usage: cofferd vault declare-rollback -accounts FILE [-rollbacks FILE] [-device NAME] -reason TEXT

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
	// No default: run from another folder than the daemon's, the
	// declaration would go to a file the daemon never serves.
	accountsPath := fs.String("accounts", "", "the daemon's accounts file (required, or -rollbacks; or COFFERD_ACCOUNTS); the rollbacks file is beside it unless -rollbacks says otherwise")
	path := fs.String("rollbacks", "", "rollbacks file (default: cofferd-rollbacks.json beside the -accounts file)")
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
		if *accountsPath == "" {
			return fmt.Errorf("cofferd vault declare-rollback needs -accounts FILE (or COFFERD_ACCOUNTS) or -rollbacks FILE: the files the daemon reads; %w", errUsage)
		}
		*path = host.DefaultRollbacksPath(*accountsPath)
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
