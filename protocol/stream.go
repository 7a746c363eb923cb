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
	"sync/atomic"
	"time"
)

// Handler answers one request (an encoded Envelope) with one reply.
type Handler func(ctx context.Context, request []byte) []byte

// ServeOptions bound what one stream may hold of a server.
type ServeOptions struct {
	// MaxInFlight bounds the requests answered at once; reading pauses
	// while that many are pending, which is the stream's backpressure.
	// 1 if less.
	MaxInFlight int
	// WriteTimeout bounds the writing of one reply on a stream with write
	// deadlines (a net.Conn): a peer that stops reading makes the write
	// fail and the stream end, rather than hold the stream, its handlers
	// and the server's shutdown for ever. DefaultWriteTimeout if 0.
	WriteTimeout time.Duration
	// IdleTimeout ends a stream with read deadlines (ErrIdle) once it has
	// had no request and none in flight for this long, so that idle peers
	// do not hold connections for ever. 0: never.
	IdleTimeout time.Duration
}

// DefaultWriteTimeout is ServeOptions.WriteTimeout's default: ample for a
// 16 KiB reply to a peer that reads.
const DefaultWriteTimeout = 10 * time.Second

// ShutdownWriteGrace bounds every reply write still to come, and one in
// progress, once ServeStream's context has ended.
const ShutdownWriteGrace = time.Second

// ErrIdle is returned by ServeStreamWith when a stream was idle for its
// IdleTimeout.
var ErrIdle = errors.New("protocol: stream idle for too long")

// ServeStream is ServeStreamWith with at most maxInFlight requests at once
// and the default write timeout.
func ServeStream(ctx context.Context, rw io.ReadWriter, h Handler, maxInFlight int) error {
	return ServeStreamWith(ctx, rw, h, ServeOptions{MaxInFlight: maxInFlight})
}

// ServeStreamWith reads request frames from rw and answers each with h, at
// most opts.MaxInFlight at a time. A reply carries its request's id. A
// damaged frame is answered with a CodeBadFrame error reply, under the
// frame's id when its header survived and id 0 otherwise, and serving goes
// on. It returns when the stream ends (nil for a clean EOF), when a reply
// cannot be written in time, when the stream has been idle for
// opts.IdleTimeout (ErrIdle), or when ctx is done; it waits for the
// handlers in flight, whose replies then get ShutdownWriteGrace at most.
func ServeStreamWith(ctx context.Context, rw io.ReadWriter, h Handler, opts ServeOptions) error {
	maxInFlight := max(opts.MaxInFlight, 1)
	writeTimeout := opts.WriteTimeout
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	var (
		writeMu    sync.Mutex
		writeErr   error
		wg         sync.WaitGroup
		slots      = make(chan struct{}, maxInFlight)
		inFlight   atomic.Int64
		lastActive atomic.Int64 // unix nanoseconds of the last frame read or reply written
		closing    atomic.Int64 // once ctx is done: the write deadline, in unix nanoseconds
	)
	lastActive.Store(time.Now().UnixNano())
	wd, _ := rw.(writeDeadliner)
	rd, _ := rw.(readDeadliner)
	reply := func(id uint32, payload []byte) {
		writeMu.Lock()
		defer writeMu.Unlock()
		if writeErr != nil {
			return
		}
		if wd != nil {
			deadline := time.Now().Add(writeTimeout)
			if c := closing.Load(); c != 0 && c < deadline.UnixNano() {
				deadline = time.Unix(0, c)
			}
			wd.SetWriteDeadline(deadline)
		}
		writeErr = WriteFrame(rw, Frame{ID: id, Payload: payload})
		lastActive.Store(time.Now().UnixNano())
		if writeErr != nil && rd != nil {
			rd.SetReadDeadline(time.Now()) // wake the reader: the stream is done
		}
	}
	failed := func() error {
		writeMu.Lock()
		defer writeMu.Unlock()
		return writeErr
	}
	// When ctx ends, wake the reader, and cut short the write in progress
	// (it may be to a peer that never reads) and those still to come.
	stop := context.AfterFunc(ctx, func() {
		if wd != nil {
			deadline := time.Now().Add(ShutdownWriteGrace)
			closing.Store(deadline.UnixNano())
			wd.SetWriteDeadline(deadline)
		}
		if rd != nil {
			rd.SetReadDeadline(time.Now())
		}
	})
	defer stop()
	defer wg.Wait()
	var in io.Reader = rw
	if rd != nil {
		gap := FrameStallTimeout
		if opts.IdleTimeout > 0 {
			gap = min(gap, opts.IdleTimeout)
		}
		in = &stallReader{r: rw, d: rd, gap: gap}
	}
	r := NewFrameReader(in)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := failed(); err != nil {
			return err
		}
		f, err := r.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Idle between frames: look at ctx and the writes, read on.
			idle := time.Duration(time.Now().UnixNano() - lastActive.Load())
			if opts.IdleTimeout > 0 && inFlight.Load() == 0 && idle >= opts.IdleTimeout {
				return ErrIdle
			}
			continue
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
		lastActive.Store(time.Now().UnixNano())
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		inFlight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			reply(f.ID, h(ctx, f.Payload))
			inFlight.Add(-1)
		}()
	}
}

// FrameStallTimeout is how long ServeStream waits for the next byte of a
// frame it has started to read before giving the frame up as truncated. It
// applies to streams with read deadlines (sockets, and serial ports that
// support them); it is long enough for a full frame's bytes to trickle in at
// 115200 baud between two reads.
var FrameStallTimeout = 2 * time.Second

type (
	readDeadliner  interface{ SetReadDeadline(time.Time) error }
	writeDeadliner interface{ SetWriteDeadline(time.Time) error }
)

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
	// writing holds the right to write a frame (capacity 1): a channel,
	// not a mutex, so that a caller can stop waiting for it when its
	// context ends.
	writing chan struct{}
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
		writing: make(chan struct{}, 1), nextID: binary.BigEndian.Uint32(first[:])}
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

// RoundTrip sends one request and waits for its reply. It returns when ctx
// ends, also while its request waits to be written or is being written: on
// a stream without write deadlines (a serial port), a peer that stops
// reading blocks the write, which then goes on in the background, holding
// the stream for later requests (they too end with their contexts) until
// it completes or the stream is closed.
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

	select {
	case c.writing <- struct{}{}:
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
	written := make(chan error, 1)
	go func() {
		defer func() { <-c.writing }()
		written <- WriteFrame(c.rw, Frame{ID: id, Payload: request})
	}()
	select {
	case err := <-written:
		if err != nil {
			c.forget(id)
			return nil, fmt.Errorf("%w: %v", ErrStreamClosed, err)
		}
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
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
