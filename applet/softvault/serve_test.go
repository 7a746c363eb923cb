package softvault

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// serveForTest runs Serve on a fresh software vault and returns its socket
// and a function that stops it and returns Serve's result.
func serveForTest(t *testing.T, opts Options) (sock string, stop func() error) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := DevSetup(ctx, dir, 10, io.Discard); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "v.sock")
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, dir, "unix:"+sock, opts, io.Discard) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return within 10 s of its shutdown")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return sock, stop
}

func dialVault(t *testing.T, sock string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		if c, err = net.Dial("unix", sock); err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
	}
	t.Fatal(err)
	return nil
}

// status sends a status request on c and returns the reply's error, nil for
// a status reply.
func status(c net.Conn, id uint32) error {
	req, _ := protocol.Encode(protocol.TypeStatus, protocol.NewStatusRequest())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := protocol.WriteFrame(c, protocol.Frame{ID: id, Payload: req}); err != nil {
		return err
	}
	f, err := protocol.NewFrameReader(c).Next()
	if err != nil {
		return err
	}
	return protocol.Decode(f.Payload, protocol.TypeStatus, &protocol.StatusReply{})
}

// Connections beyond the limit are refused with a clear busy reply and
// closed; those within it are served on, and a freed place serves again.
func TestServeRefusesConnectionsBeyondTheLimit(t *testing.T) {
	sock, _ := serveForTest(t, Options{MaxConnections: 2})
	a, b := dialVault(t, sock), dialVault(t, sock)
	for _, c := range []net.Conn{a, b} {
		if err := status(c, 1); err != nil {
			t.Fatalf("a connection within the limit: %v", err)
		}
	}
	extra := dialVault(t, sock)
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := protocol.NewFrameReader(extra)
	f, err := r.Next()
	if err != nil {
		t.Fatalf("the connection over the limit got no reply: %v", err)
	}
	err = protocol.Decode(f.Payload, protocol.TypeStatus, &protocol.Empty{})
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeBusy}) || !strings.Contains(err.Error(), "connections") {
		t.Fatalf("the connection over the limit got %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("the connection over the limit was not closed: %v", err)
	}
	for _, c := range []net.Conn{a, b} {
		if err := status(c, 2); err != nil {
			t.Fatalf("a connection within the limit after the refusal: %v", err)
		}
	}
	a.Close()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if err := status(dialVault(t, sock), 3); err == nil {
			break
		} else if time.Since(start) > 10*time.Second {
			t.Fatalf("no connection served after one closed: %v", err)
		}
	}
}

// An idle connection is closed by the vault after the idle timeout (a
// second: the first request must arrive within it, however the test is
// scheduled).
func TestServeClosesIdleConnections(t *testing.T) {
	sock, _ := serveForTest(t, Options{IdleTimeout: time.Second})
	c := dialVault(t, sock)
	if err := status(c, 1); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("an idle connection was not closed by the vault: %v", err)
	}
}

// A peer that floods requests and never reads the replies does not keep
// the vault from shutting down, and while it runs other connections are
// served.
func TestServeShutsDownWithAPeerThatNeverReads(t *testing.T) {
	sock, stop := serveForTest(t, Options{})
	flood := dialVault(t, sock)
	req, _ := protocol.Encode(protocol.TypeStatus, protocol.NewStatusRequest())
	var frames []byte
	for i := range 4096 {
		var buf strings.Builder
		protocol.WriteFrame(&buf, protocol.Frame{ID: uint32(i + 1), Payload: req})
		frames = append(frames, buf.String()...)
	}
	// Keep writing until the vault stops reading: its replies fill the
	// socket's buffers, its writers block, and so does its reader.
	stuck := make(chan struct{})
	go func() {
		defer close(stuck)
		for {
			flood.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := flood.Write(frames); err != nil {
				return
			}
		}
	}()
	<-stuck
	if err := status(dialVault(t, sock), 1); err != nil {
		t.Fatalf("another connection while one floods: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
