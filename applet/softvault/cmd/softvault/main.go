// Command softvault is Coffer's vault as an ordinary program: the same vault
// logic and record store as the firmware, served over the framing protocol on
// a unix socket or loopback TCP, with its state in a folder.
//
// It is INSECURE by construction and says so in its identity bundle and at
// start: its keys live in files that whoever runs it can read, and its
// monotonic anchor is a file the host can roll back together with the store.
// It exists for development, for tests and for `make run` without hardware.
// Every command that opens the vault locks its state folder: a second one
// on the same folder exits with an error naming the process that holds it.
//
//	softvault init      -state DIR                   create a vault (again: finish an interrupted init)
//	softvault identity  -state DIR -o FILE            write its unsigned identity (to be signed)
//	softvault install   -state DIR -bundle FILE       install a signed identity bundle
//	softvault serve     -state DIR -listen ADDR       serve (ADDR: unix:PATH or tcp:127.0.0.1:PORT)
//	softvault dev       -state DIR -listen ADDR       init, self-provision with a dev key, serve
//
// The provisioning key and signing identities are coffer-provision's
// (firmware/cmd/coffer-provision).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/internal/buildinfo"
)

func main() {
	if len(os.Args) > 1 && buildinfo.IsVersionFlag(os.Args[1]) {
		fmt.Print(buildinfo.Line("softvault"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "softvault:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: softvault init|identity|install|serve|dev … (see -h of each); provisioning: coffer-provision")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("softvault "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "", "state folder (store, anchor, device key)")
	switch cmd {
	case "init":
		maxLimit := fs.Uint("max-limit", 10, "highest attempt limit a client may choose")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return softvault.Init(ctx, *state, *maxLimit, stdout)
	case "identity":
		out := fs.String("o", "", "write the unsigned identity here (CBOR)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return softvault.WriteIdentity(ctx, *state, *out, stdout)
	case "install":
		bundle := fs.String("bundle", "", "signed identity bundle (CBOR)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return softvault.InstallBundle(ctx, *state, *bundle, stdout)
	case "serve", "dev":
		listen := fs.String("listen", "", "unix:PATH or tcp:127.0.0.1:PORT")
		flush := fs.Duration("flush-latency", 0, "add this latency to every store flush (benchmarks)")
		maxLimit := fs.Uint("max-limit", 10, "with dev: highest attempt limit for a new vault")
		maxConns := fs.Int("max-conns", softvault.DefaultMaxConnections, "connections served at once; more are refused")
		idle := fs.Duration("idle-timeout", softvault.DefaultIdleTimeout, "close a connection idle for this long")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if cmd == "dev" {
			if _, err := softvault.DevSetup(ctx, *state, *maxLimit, stdout); err != nil {
				return err
			}
		}
		return softvault.Serve(ctx, *state, *listen, softvault.Options{FlushLatency: *flush, Log: log,
			MaxConnections: *maxConns, IdleTimeout: *idle}, stderr)
	}
	return errUsage
}
