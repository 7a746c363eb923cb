package protocol

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoHandler answers a status request with an error reply naming the
// request's first byte, so replies can be matched to requests.
func echoHandler(ctx context.Context, req []byte) []byte {
	return EncodeError(Errorf(CodeBusy, "%x", req))
}

func serve(t *testing.T, h Handler) (net.Conn, chan error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeStream(context.Background(), b, h, 4) }()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, done
}

func TestServeStreamAnswersGarbageAndKeepsServing(t *testing.T) {
	conn, done := serve(t, echoHandler)
	r := NewFrameReader(conn)
	go func() {
		conn.Write([]byte("line noise \x00\xff CF not a frame"))
		WriteFrame(conn, Frame{ID: 7, Payload: []byte{0xaa}})
	}()
	var sawBadFrame, sawReply bool
	for !sawReply {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		var pe *Error
		if err := Decode(f.Payload, TypeStatus, &Empty{}); !errors.As(err, &pe) {
			t.Fatalf("reply %v", err)
		}
		switch {
		case pe.Code == CodeBadFrame && f.ID == 0:
			sawBadFrame = true
		case f.ID == 7 && pe.Message == "aa":
			sawReply = true
		default:
			t.Fatalf("unexpected reply id %d %+v", f.ID, pe)
		}
	}
	if !sawBadFrame {
		t.Fatal("garbage got no error reply")
	}
	conn.Close()
	if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("serve ended with %v", err)
	}
}

func TestServeStreamRefusesAnOversizedFrameAndKeepsServing(t *testing.T) {
	conn, _ := serve(t, echoHandler)
	client := NewStreamClient(conn)
	defer client.Close()
	// A header announcing more than MaxPayload, then a normal request.
	big := make([]byte, MaxPayload+1)
	raw := frameAppendRaw(nil, FrameVersion, 0, 99, uint32(len(big)), big)
	go conn.Write(raw)
	reply, err := client.RoundTrip(context.Background(), []byte{0x01})
	if err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if err := Decode(reply, TypeStatus, &Empty{}); !errors.As(err, &pe) || pe.Message != "01" {
		t.Fatalf("request after an oversized frame: %v", err)
	}
}

func TestStreamClientMatchesConcurrentReplies(t *testing.T) {
	slow := func(ctx context.Context, req []byte) []byte {
		time.Sleep(time.Duration(req[0]%5) * time.Millisecond)
		return echoHandler(ctx, req)
	}
	conn, _ := serve(t, slow)
	client := NewStreamClient(conn)
	defer client.Close()
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i byte) {
			defer wg.Done()
			reply, err := client.RoundTrip(context.Background(), []byte{i})
			if err != nil {
				t.Error(err)
				return
			}
			var pe *Error
			if err := Decode(reply, TypeStatus, &Empty{}); !errors.As(err, &pe) || pe.Message != fmt.Sprintf("%02x", i) {
				t.Errorf("request %d got reply %v", i, err)
			}
		}(byte(i))
	}
	wg.Wait()
}

func TestStreamClientFailsRequestsInFlightWhenTheStreamEnds(t *testing.T) {
	block := make(chan struct{})
	conn, _ := serve(t, func(ctx context.Context, req []byte) []byte { <-block; return nil })
	client := NewStreamClient(conn)
	errc := make(chan error, 1)
	go func() {
		_, err := client.RoundTrip(context.Background(), []byte{1})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	client.Close()
	close(block)
	if err := <-errc; !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("request in flight: %v", err)
	}
	if _, err := client.RoundTrip(context.Background(), []byte{1}); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("request after close: %v", err)
	}
}

// A frame cut off mid-payload (its sender died) is given up after
// FrameStallTimeout of silence, and the next request is served at once
// rather than being swallowed as the dead frame's missing bytes.
func TestServeStreamGivesUpATornFrame(t *testing.T) {
	saved := FrameStallTimeout
	FrameStallTimeout = 200 * time.Millisecond
	defer func() { FrameStallTimeout = saved }()
	conn, _ := serve(t, echoHandler)
	torn, _ := AppendFrame(nil, Frame{ID: 3, Payload: make([]byte, 4096)})
	go conn.Write(torn[:100])
	r := NewFrameReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if err := Decode(f.Payload, TypeStatus, &Empty{}); !errors.As(err, &pe) || pe.Code != CodeBadFrame || f.ID != 3 {
		t.Fatalf("reply to a torn frame: id %d, %v", f.ID, err)
	}
	go WriteFrame(conn, Frame{ID: 4, Payload: []byte{0xbb}})
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.ID == 4 {
			if err := Decode(f.Payload, TypeStatus, &Empty{}); !errors.As(err, &pe) || pe.Message != "bb" {
				t.Fatalf("request after a torn frame: %v", err)
			}
			return
		}
	}
}

func TestFrameReaderTimeoutsAreNotFinal(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	r := NewFrameReader(b)
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle timeout: %v", err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	go WriteFrame(a, Frame{ID: 1, Payload: []byte("x")})
	if f, err := r.Next(); err != nil || f.ID != 1 {
		t.Fatalf("frame after an idle timeout: %v", err)
	}
}

func TestStreamClientsStartAtRandomIDs(t *testing.T) {
	ids := map[uint32]bool{}
	for i := 0; i < 8; i++ {
		a, b := net.Pipe()
		c := NewStreamClient(a)
		go c.RoundTrip(context.Background(), []byte{1})
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := NewFrameReader(b).Next()
		if err != nil {
			t.Fatal(err)
		}
		ids[f.ID] = true
		c.Close()
		b.Close()
	}
	if len(ids) < 7 {
		t.Fatalf("8 clients used only %d distinct first ids", len(ids))
	}
}
