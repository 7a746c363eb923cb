package softvaulttest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
)

// A server that stops before it listens is reported with its error, not
// waited for until the bound.
func TestWaitForSocketReportsAnEarlyExit(t *testing.T) {
	exited := make(chan error, 1)
	exited <- errors.New("state folder locked")
	err := WaitForSocket(filepath.Join(t.TempDir(), "none.sock"), exited, time.Hour)
	if err == nil || !strings.Contains(err.Error(), "state folder locked") {
		t.Fatalf("early exit: %v", err)
	}
}

// ServeDev returns with the vault accepting connections and its identity
// key.
func TestServeDevServes(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "v.sock")
	if pub := ServeDev(t, filepath.Join(dir, "state"), sock); len(pub) != ed25519.PublicKeySize {
		t.Fatalf("identity key of %d bytes", len(pub))
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("not accepting after ServeDev: %v", err)
	}
	c.Close()
}

// After stop, Serve's socket accepts no connection.
func TestServeStops(t *testing.T) {
	dir := t.TempDir()
	state, sock := filepath.Join(dir, "state"), filepath.Join(dir, "v.sock")
	if _, err := softvault.DevSetup(context.Background(), state, 10, io.Discard); err != nil {
		t.Fatal(err)
	}
	stop := Serve(t, state, sock)
	stop()
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Fatal("still accepting after stop")
	}
}
