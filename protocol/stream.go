package protocol

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Handler answers one request (an encoded Envelope) with one reply.
type Handler func(ctx context.Context, request []byte) []byte

// ServeStream reads request frames from rw and answers each with h, at most
// maxInFlight at a time (reading pauses while that many are pending, which
// is the stream's backpressure). A reply carries its request's id. A damaged
// frame is answered with a CodeBadFrame error reply, under the frame's id
// when its header survived and id 0 otherwise, and serving goes on. It
// returns when the stream ends (nil for a clean EOF) or ctx is done.
func ServeStream(ctx context.Context, rw io.ReadWriter, h Handler, maxInFlight int) error {
	if maxInFlight < 1 {
		maxInFlight = 1
	}
	var (
		writeMu  sync.Mutex
		writeErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, maxInFlight)
	)
	reply := func(id uint32, payload []byte) {
		writeMu.Lock()
		defer writeMu.Unlock()
		if writeErr == nil {
			writeErr = WriteFrame(rw, Frame{ID: id, Payload: payload})
		}
	}
	defer wg.Wait()
	var in io.Reader = rw
	if d, ok := rw.(readDeadliner); ok {
		in = &stallReader{r: rw, d: d, gap: FrameStallTimeout}
	}
	r := NewFrameReader(in)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := r.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // idle between frames: look at ctx, read on
		}
		if err != nil {
			var fe *FrameError
			if errors.As(err, &fe) {
				var id uint32
				if fe.HasID {
					id = fe.ID
				}
				reply(id, EncodeError(Errorf(CodeBadFrame, "%s", fe.Kind)))
				continue
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			reply(f.ID, h(ctx, f.Payload))
		}()
		writeMu.Lock()
		err = writeErr
		writeMu.Unlock()
		if err != nil {
			return err
		}
	}
}

// FrameStallTimeout is how long ServeStream waits for the next byte of a
// frame it has started to read before giving the frame up as truncated. It
// applies to streams with read deadlines (sockets, and serial ports that
// support them); it is long enough for a full frame's bytes to trickle in at
// 115200 baud between two reads.
var FrameStallTimeout = 2 * time.Second

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// stallReader gives every Read a deadline of gap from now, so that a silent
// peer shows up as os.ErrDeadlineExceeded, which FrameReader turns into
// either "idle" or "the frame in progress is not coming".
type stallReader struct {
	r   io.Reader
	d   readDeadliner
	gap time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	if err := s.d.SetReadDeadline(time.Now().Add(s.gap)); err != nil {
		return 0, err
	}
	return s.r.Read(p)
}

// ErrStreamClosed is returned for requests in flight when a stream ends:
// the peer may or may not have processed them, and a caller must not retry
// a login step on its own.
var ErrStreamClosed = errors.New("protocol: stream closed")

// StreamClient sends requests over one stream and matches replies by id,
// so that many requests can be in flight at once.
type StreamClient struct {
	rw io.ReadWriteCloser

	mu      sync.Mutex
	nextID  uint32
	waiting map[uint32]chan []byte
	err     error
	done    chan struct{}
	writeMu sync.Mutex
}

// NewStreamClient starts reading replies from rw.
//
// Request ids start at a random value: on a serial line the byte stream
// outlives a client (cofferd reconnecting after an error), and a late reply
// to an earlier client's request must not match a new request by accident.
func NewStreamClient(rw io.ReadWriteCloser) *StreamClient {
	var first [4]byte
	rand.Read(first[:])
	c := &StreamClient{rw: rw, waiting: map[uint32]chan []byte{}, done: make(chan struct{}),
		nextID: binary.BigEndian.Uint32(first[:])}
	go c.readLoop()
	return c
}

func (c *StreamClient) readLoop() {
	r := NewFrameReader(c.rw)
	var err error
	for {
		var f Frame
		f, err = r.Next()
		if err != nil {
			if IsRecoverable(err) {
				continue // a damaged reply: its caller times out
			}
			break
		}
		c.mu.Lock()
		ch, ok := c.waiting[f.ID]
		delete(c.waiting, f.ID)
		c.mu.Unlock()
		if ok {
			ch <- f.Payload
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", ErrStreamClosed, err)
	for id, ch := range c.waiting {
		delete(c.waiting, id)
		close(ch)
	}
	c.mu.Unlock()
	close(c.done)
}

// RoundTrip sends one request and waits for its reply.
func (c *StreamClient) RoundTrip(ctx context.Context, request []byte) ([]byte, error) {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	if c.nextID == 0 { // id 0 is for replies to damaged frames
		c.nextID++
	}
	id := c.nextID
	c.waiting[id] = ch
	c.mu.Unlock()

	c.writeMu.Lock()
	err := WriteFrame(c.rw, Frame{ID: id, Payload: request})
	c.writeMu.Unlock()
	if err != nil {
		c.forget(id)
		return nil, fmt.Errorf("%w: %v", ErrStreamClosed, err)
	}
	select {
	case reply, ok := <-ch:
		if !ok {
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			return nil, err
		}
		return reply, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

func (c *StreamClient) forget(id uint32) {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
}

// Done is closed when the stream has ended.
func (c *StreamClient) Done() <-chan struct{} { return c.done }

// Close closes the stream; requests in flight fail with ErrStreamClosed.
func (c *StreamClient) Close() error {
	err := c.rw.Close()
	<-c.done
	return err
}
