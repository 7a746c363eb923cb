// Package softvaulttest serves the software vault for the tests of what
// talks to it (cofferd, the provisioning command, the host library, the
// softvault command), so that each starts it, waits for its socket and
// stops it the same way. It is test support: only _test files import it
// (cofferd's dependency test would see it among the trusted code it links).
package softvaulttest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/internal/testwait"
)

// Serve serves the software vault whose state is in the folder state on the
// unix socket sock (softvault.Serve, quiet), until the test ends or stop is
// called, and returns once the socket accepts connections. An error from
// Serve fails the test, as does Serve returning before the socket is up.
func Serve(t testing.TB, state, sock string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	served := make(chan error, 1)
	go func() { served <- softvault.Serve(ctx, state, "unix:"+sock, softvault.Options{Log: quiet}, io.Discard) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := testwait.Within(t, "softvault.Serve to return after its shutdown", served); err != nil {
				t.Errorf("softvault.Serve: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	if err := WaitForSocket(sock, served, testwait.Bound); err != nil {
		stopped = true
		cancel()
		t.Fatalf("softvault.Serve: %v", err)
	}
	return stop
}

// ServeDev creates a development vault in the folder state, created and
// self-provisioned as `softvault dev` does (softvault.DevSetup), serves it
// as Serve does, and returns its identity key.
func ServeDev(t testing.TB, state, sock string) ed25519.PublicKey {
	t.Helper()
	pub, err := softvault.DevSetup(context.Background(), state, 10, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	Serve(t, state, sock)
	return pub
}

// WaitForSocket dials the unix socket sock until it accepts a connection.
// It returns an error if a value arrives on exited first (the server
// stopped before it listened) or when within has passed: a bound on a hang,
// not a timing assertion.
func WaitForSocket(sock string, exited <-chan error, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before it accepted connections on %s: %v", sock, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection accepted on %s within %v", sock, within)
		}
	}
}
