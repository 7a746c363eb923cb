package host

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/internal/testwait"
	"github.com/cofferhsm/coffer/protocol"
)

// healthz sends GET /healthz on an open connection (kept alive) and returns
// the response's status and body.
func healthz(t *testing.T, c net.Conn, r *bufio.Reader) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: cofferd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// cofferd holds at most MaxConnections HTTP connections: one more gets a
// 503 that says why and is closed, the others are served on, and a freed
// place serves again.
func TestHTTPConnectionsBeyondTheLimitAreRefused(t *testing.T) {
	accounts, _, _ := testAccounts(t, "alice")
	s, err := New(Config{Devices: []Device{newStub("stub")}, Store: accounts, Log: quiet, PollInterval: -1, MaxConnections: 2})
	if err != nil {
		t.Fatal(err)
	}
	reportHealthy(t, s)
	t.Cleanup(func() { s.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-served })
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	a, ar := dial()
	b, br := dial()
	for _, c := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{a, ar}, {b, br}} {
		if code, body := healthz(t, c.c, c.r); code != http.StatusOK {
			t.Fatalf("a connection within the limit: %d %s", code, body)
		}
	}
	extra, er := dial()
	extra.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(er, nil)
	if err != nil {
		t.Fatalf("the connection over the limit got no response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "connections") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the connection over the limit got %d %q (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if _, err := er.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("the connection over the limit was not closed: %v", err)
	}
	if code, _ := healthz(t, b, br); code != http.StatusOK {
		t.Fatalf("a connection within the limit after the refusal: %d", code)
	}
	a.Close()
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		c, r := dial()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: cofferd\r\n\r\n")
		if resp, err := http.ReadResponse(r, nil); err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("no connection served after one closed")
		}
	}
}

// A client that never reads its response must not outlive the shutdown:
// once the grace period is over, its connection is closed and the handler
// writing to it returns.
func TestShutdownCutsAClientThatNeverReads(t *testing.T) {
	writing, finished := make(chan struct{}), make(chan error, 1)
	big := make([]byte, 1<<20)
	srv := &http.Server{
		WriteTimeout: time.Hour, // only the shutdown may end this
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(writing)
			for {
				if _, err := w.Write(big); err != nil {
					finished <- err
					return
				}
			}
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeGracefully(ctx, srv, ln, 50*time.Millisecond) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	testwait.Within(t, "the handler to start writing", writing)
	stop()
	testwait.Within(t, "ServeGracefully to return", served)
	testwait.Within(t, "the handler writing to a client that never reads to return", finished)
}

// The vault device stops reading (a hung firmware behind a serial port,
// which has no write deadlines): requests end with their timeout (504), and
// cofferd still closes.
func TestADeviceThatStopsReadingDoesNotHoldCofferd(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	conns := make(chan *deafStream, 4)
	dev := NewStreamDevice("serial", func(ctx context.Context) (io.ReadWriteCloser, error) {
		c := newDeafStream()
		conns <- c
		return c, nil
	}, StreamOptions{Kind: "serial", Log: quiet})
	s, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, Timeout: 100 * time.Millisecond})
	waitFor(t, "the device to connect", dev.Connected)
	req := mustEncode(t, protocol.TypeIdentity, &protocol.Empty{})
	for i := range 2 {
		done := make(chan error, 1)
		go func() {
			_, err := post(context.Background(), http.DefaultClient, hs.URL, tokens["alice"], req)
			done <- err
		}()
		if err := testwait.Within(t, "a request to a device that does not read", done); statusOf(err) != http.StatusGatewayTimeout {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testwait.Within(t, "cofferd to close its device", closed)
}

// deafStream is a stream with no deadlines whose far end never reads.
type deafStream struct {
	r    *io.PipeReader // never written
	w    *io.PipeWriter // never read
	rw   *io.PipeWriter
	peer *io.PipeReader
}

func newDeafStream() *deafStream {
	r, rw := io.Pipe()
	peer, w := io.Pipe()
	return &deafStream{r: r, w: w, rw: rw, peer: peer}
}

func (d *deafStream) Read(p []byte) (int, error)  { return d.r.Read(p) }
func (d *deafStream) Write(p []byte) (int, error) { return d.w.Write(p) }
func (d *deafStream) Close() error {
	d.rw.Close()
	d.peer.Close()
	return nil
}
