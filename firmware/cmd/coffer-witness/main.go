// Command coffer-witness is a transparency-log witness (C2SP tlog-witness)
// for Coffer's release log: it cosigns a log's checkpoint only when the
// log's key signed it and it is consistent with the last one it cosigned,
// and remembers that across restarts (internal/witness). A release log's
// policy names k of n witnesses; run each on its own machine, by someone
// other than the log's operator, or a witness adds nothing.
//
//	coffer-witness keygen -name NAME -o FILE
//	        make a witness key named NAME (e.g. witness.example.org); prints
//	        its cosignature/v1 verifier key, which log policies pin
//	coffer-witness serve -key FILE -state DIR -listen ADDR -log ORIGIN=VKEY [-log …]
//	        serve POST /add-checkpoint for the logs given (origin and the
//	        release key's note verifier key); DIR keeps what was cosigned
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	fnote "github.com/transparency-dev/formats/note"

	"github.com/cofferhsm/coffer/internal/buildinfo"
	"github.com/cofferhsm/coffer/internal/notekey"
	"github.com/cofferhsm/coffer/internal/witness"
)

func main() {
	if len(os.Args) > 1 && buildinfo.IsVersionFlag(os.Args[1]) {
		fmt.Print(buildinfo.Line("coffer-witness"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coffer-witness:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: coffer-witness keygen|serve … (see -h of each)")

// logFlags collects repeated -log ORIGIN=VKEY.
type logFlags map[string]string

func (l logFlags) String() string { return fmt.Sprint(map[string]string(l)) }
func (l logFlags) Set(s string) error {
	origin, vkey, ok := strings.Cut(s, "=")
	if !ok || origin == "" || vkey == "" {
		return fmt.Errorf("want ORIGIN=VKEY, got %q", s)
	}
	if _, dup := l[origin]; dup {
		return fmt.Errorf("log %q given twice", origin)
	}
	l[origin] = vkey
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("coffer-witness "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "keygen":
		name := fs.String("name", "", "the witness's name, as its cosignatures carry it (e.g. witness.example.org)")
		out := fs.String("o", "", "write the private key here (refuses to overwrite)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		vkey, err := notekey.New(*out, *name, "coffer witness key (note skey, cosignature/v1). Keep it on the witness.")
		if err != nil {
			return err
		}
		cosig, err := fnote.VKeyToCosignatureV1(vkey)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "witness key (cosignature/v1): %s\n", cosig)
		return nil
	case "serve":
		keyFile := fs.String("key", "", "the witness's private key file (from keygen)")
		dir := fs.String("state", "", "folder that keeps the newest checkpoint cosigned per log")
		listen := fs.String("listen", "127.0.0.1:8490", "address to serve on")
		logs := logFlags{}
		fs.Var(logs, "log", "a log to witness, ORIGIN=VKEY (repeat for more)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return errors.New("serve: -state is required")
		}
		skey, err := notekey.Read(*keyFile)
		if err != nil {
			return err
		}
		w, err := witness.New(skey, *dir, logs)
		if err != nil {
			return err
		}
		defer w.Close()
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "coffer-witness %s: witnessing %d log(s) on http://%s/add-checkpoint\n", w.Name(), len(logs), ln.Addr())
		return serve(ctx, ln, w)
	}
	return errUsage
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
