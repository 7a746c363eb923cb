package protocol

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/internal/testwait"
)

// A peer that sends requests and never reads the replies must not keep the
// server from shutting down: the reply write is bounded, and ServeStream
// returns once its context ends. net.Pipe has no buffer, so the first reply
// already blocks.
func TestServeStreamShutsDownWithAPeerThatNeverReads(t *testing.T) {
	peer, server := net.Pipe()
	t.Cleanup(func() { peer.Close(); server.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	answered := make(chan struct{}, 1)
	h := func(ctx context.Context, req []byte) []byte {
		answered <- struct{}{}
		return echoHandler(ctx, req)
	}
	done := make(chan error, 1)
	go func() { done <- ServeStream(ctx, server, h, 4) }()
	if err := WriteFrame(peer, Frame{ID: 1, Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	testwait.Within(t, "the request to be handled", answered)
	cancel() // shut down while the reply cannot be written
	if err := testwait.Within(t, "ServeStream to return after its context ended", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeStream returned %v", err)
	}
}

// Without a shutdown, a peer that stops reading loses its stream once a
// reply cannot be written within the write timeout; the handler is not held.
func TestServeStreamEndsAStreamWhoseRepliesCannotBeWritten(t *testing.T) {
	peer, server := net.Pipe()
	t.Cleanup(func() { peer.Close(); server.Close() })
	done := make(chan error, 1)
	go func() {
		done <- ServeStreamWith(context.Background(), server, echoHandler, ServeOptions{MaxInFlight: 4, WriteTimeout: 50 * time.Millisecond})
	}()
	if err := WriteFrame(peer, Frame{ID: 1, Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := testwait.Within(t, "ServeStream to give up the stream", done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ServeStream returned %v", err)
	}
}

// A stream that has had no request for the idle timeout is ended, one with
// requests is not, however long they take.
func TestServeStreamEndsIdleStreams(t *testing.T) {
	peer, server := net.Pipe()
	t.Cleanup(func() { peer.Close(); server.Close() })
	release := make(chan struct{})
	slow := func(ctx context.Context, req []byte) []byte {
		<-release
		return echoHandler(ctx, req)
	}
	done := make(chan error, 1)
	go func() {
		done <- ServeStreamWith(context.Background(), server, slow, ServeOptions{MaxInFlight: 4, IdleTimeout: 200 * time.Millisecond})
	}()
	// A write deadline: should the server end the stream as idle before
	// this first frame (a test scheduled late), the write fails rather
	// than block on the unread pipe for ever.
	peer.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := WriteFrame(peer, Frame{ID: 1, Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	// In flight for many idle timeouts: not idle.
	time.Sleep(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("a stream with a request in flight was ended: %v", err)
	default:
	}
	close(release)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f, err := NewFrameReader(peer).Next(); err != nil || f.ID != 1 {
		t.Fatalf("reply %v %v", f, err)
	}
	if err := testwait.Within(t, "the idle stream to be ended", done); !errors.Is(err, ErrIdle) {
		t.Fatalf("ServeStream returned %v", err)
	}
}

// deafConn is a stream without deadlines (as a serial port is) whose peer
// never reads: every write blocks until the stream is closed.
type deafConn struct {
	*io.PipeReader // never written: reads block too
	w              *io.PipeWriter
	peer           *io.PipeReader
}

func newDeafConn() *deafConn {
	r, _ := io.Pipe()
	peer, w := io.Pipe()
	return &deafConn{PipeReader: r, w: w, peer: peer}
}

func (c *deafConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *deafConn) Close() error {
	c.PipeReader.Close()
	c.peer.Close()
	return c.w.Close()
}

// A request to a peer that does not read fails when its context ends, and
// does not hold the requests behind it past theirs: on a stream without
// write deadlines the blocked write must not stall every caller.
func TestStreamClientRequestsEndWithTheirContextWhenThePeerDoesNotRead(t *testing.T) {
	conn := newDeafConn()
	c := NewStreamClient(conn)
	t.Cleanup(func() { c.Close() })
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		done := make(chan error, 1)
		go func() { _, err := c.RoundTrip(ctx, []byte{byte(i)}); done <- err }()
		if err := testwait.Within(t, "a request to a peer that does not read", done); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("request %d: %v", i, err)
		}
		cancel()
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	testwait.Within(t, "Close with a write blocked", closed)
}
