package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// crc32cBitwise is an independent, bit-at-a-time CRC-32C (reflected
// polynomial 0x82F63B78), to check the table-driven one against.
func crc32cBitwise(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82F63B78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// frameEvent is one result of FrameReader.Next, with the stream offset of
// a returned frame.
type frameEvent struct {
	frame Frame
	off   int64
	err   error
}

func (e frameEvent) String() string {
	if e.err != nil {
		var fe *FrameError
		if errors.As(e.err, &fe) {
			return fmt.Sprintf("%+v", *fe)
		}
		return "final " + e.err.Error()
	}
	p := e.frame.Payload
	if len(p) > 12 {
		p = p[:12]
	}
	return fmt.Sprintf("frame{off %d, id %d, %d bytes %x}", e.off, e.frame.ID, len(e.frame.Payload), p)
}

func (e frameEvent) equal(o frameEvent) bool {
	if e.err == nil || o.err == nil {
		return e.err == nil && o.err == nil && e.off == o.off &&
			e.frame.ID == o.frame.ID && bytes.Equal(e.frame.Payload, o.frame.Payload)
	}
	var a, b *FrameError
	if errors.As(e.err, &a) && errors.As(o.err, &b) {
		return *a == *b
	}
	return e.err == o.err
}

func evFrame(off int, id uint32, payload string) frameEvent {
	var p []byte
	if payload != "" {
		p = []byte(payload)
	}
	return frameEvent{frame: Frame{ID: id, Payload: p}, off: int64(off)}
}

func evErr(e FrameError) frameEvent { return frameEvent{err: &e} }
func evEnd(err error) frameEvent    { return frameEvent{err: err} }

func evGarbage(off, n int) frameEvent {
	return evErr(FrameError{Kind: FrameGarbage, Offset: int64(off), Skipped: n})
}

// readFrameEvents calls Next until a final error, which it checks is
// repeated by a further call, and fails if that takes more calls than the
// stream has bytes (each call must consume input).
func readFrameEvents(t testing.TB, r io.Reader, streamLen int) []frameEvent {
	t.Helper()
	fr := NewFrameReader(r)
	var evs []frameEvent
	for range streamLen + 2 {
		f, err := fr.Next()
		if err == nil {
			n := int64(FrameOverhead + len(f.Payload))
			if len(f.Payload) == 0 && f.Payload != nil {
				t.Errorf("empty payload returned as non-nil slice")
			}
			evs = append(evs, frameEvent{frame: f, off: fr.off - n})
			continue
		}
		evs = append(evs, frameEvent{err: err})
		if !IsRecoverable(err) {
			if _, err2 := fr.Next(); err2 != err {
				t.Errorf("after final error %v, Next returned %v", err, err2)
			}
			return evs
		}
	}
	t.Fatalf("no final error after %d calls on a %d-byte stream", streamLen+2, streamLen)
	return nil
}

func checkFrameEvents(t *testing.T, got, want []frameEvent) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].equal(want[i])
	}
	if !ok {
		var b strings.Builder
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i].String()
			}
			if i < len(want) {
				w = want[i].String()
			}
			mark := " "
			if g != w {
				mark = "!"
			}
			fmt.Fprintf(&b, "%s %d\n    got  %s\n    want %s\n", mark, i, g, w)
		}
		t.Errorf("events differ:\n%s", b.String())
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

// frameReaderVariants deliver the same stream with different Read sizes;
// the events must not depend on them.
var frameReaderVariants = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"onebyte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	{"dataerr", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	{"chunk7", func(b []byte) io.Reader { return &chunkReader{bytes.NewReader(b), 7} }},
}

func checkStream(t *testing.T, stream []byte, want []frameEvent) {
	t.Helper()
	for _, v := range frameReaderVariants {
		t.Run(v.name, func(t *testing.T) {
			checkFrameEvents(t, readFrameEvents(t, v.wrap(stream), len(stream)), want)
		})
	}
}

func mustAppendFrame(t testing.TB, dst []byte, id uint32, payload string) []byte {
	t.Helper()
	b, err := AppendFrame(dst, Frame{ID: id, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clean fails unless b holds the magic at most at its start, so that the
// expected garbage counts below hold.
func clean(t testing.TB, b []byte) []byte {
	t.Helper()
	if len(b) > 1 && bytes.Contains(b[1:], frameMagic) {
		t.Fatalf("test frame % x holds a magic after its start; pick another id", b)
	}
	return b
}

func TestFrameCRC32C(t *testing.T) {
	// The CRC-32C check value (RFC 3720 appendix B.4 uses the same CRC).
	check := []byte("123456789")
	if got := crc32cBitwise(check); got != 0xE3069283 {
		t.Fatalf("bitwise CRC-32C check value = %#x", got)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f := mustAppendFrame(t, nil, rng.Uint32(), string(b))
		if got, want := binary.BigEndian.Uint32(f[12:16]), crc32cBitwise(f[:12]); got != want {
			t.Fatalf("header CRC %#x, want %#x", got, want)
		}
		if got, want := binary.BigEndian.Uint32(f[len(f)-4:]), crc32cBitwise(f[:len(f)-4]); got != want {
			t.Fatalf("CRC %#x, want %#x", got, want)
		}
	}
}

func TestFrameLayout(t *testing.T) {
	prefix := []byte("prefix")
	b := mustAppendFrame(t, bytes.Clone(prefix), 0x01020304, "hello")
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("AppendFrame lost dst")
	}
	f := b[len(prefix):]
	want := []byte{'C', 'F', 1, 0, 1, 2, 3, 4, 0, 0, 0, 5}
	want = binary.BigEndian.AppendUint32(want, crc32cBitwise(want))
	want = append(want, "hello"...)
	want = binary.BigEndian.AppendUint32(want, crc32cBitwise(want))
	if !bytes.Equal(f, want) {
		t.Fatalf("frame\n% x\nwant\n% x", f, want)
	}
	if len(f) != FrameOverhead+5 {
		t.Fatalf("len %d, want FrameOverhead+5", len(f))
	}
}

func TestFrameRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{2}))
	var frames []Frame
	var stream bytes.Buffer
	cw := &countingWriter{w: &stream}
	for i := range 200 {
		var n int
		switch {
		case i == 0:
			n = 0
		case i == 1:
			n = MaxPayload
		case i%20 == 0:
			n = rng.IntN(MaxPayload + 1)
		default:
			n = rng.IntN(80)
		}
		var p []byte
		if n > 0 {
			p = make([]byte, n)
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
		}
		f := Frame{ID: rng.Uint32(), Payload: p}
		frames = append(frames, f)
		if err := WriteFrame(cw, f); err != nil {
			t.Fatal(err)
		}
	}
	if cw.writes != len(frames) {
		t.Errorf("%d Write calls for %d frames", cw.writes, len(frames))
	}
	var want []frameEvent
	off := 0
	for _, f := range frames {
		want = append(want, frameEvent{frame: f, off: int64(off)})
		off += FrameOverhead + len(f.Payload)
	}
	want = append(want, evEnd(io.EOF))
	checkStream(t, stream.Bytes(), want)
}

type countingWriter struct {
	w      io.Writer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.w.Write(p)
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) - 1, nil }

type failWriter struct{ err error }

func (f failWriter) Write(p []byte) (int, error) { return 0, f.err }

func TestFrameWriteErrors(t *testing.T) {
	big := Frame{ID: 1, Payload: make([]byte, MaxPayload+1)}
	dst := []byte("keep")
	got, err := AppendFrame(dst, big)
	if !errors.Is(err, ErrFrameTooLarge) || IsRecoverable(err) {
		t.Errorf("AppendFrame(too large) error = %v", err)
	}
	if string(got) != "keep" {
		t.Errorf("AppendFrame(too large) changed dst to %q", got)
	}
	cw := &countingWriter{w: io.Discard}
	if err := WriteFrame(cw, big); !errors.Is(err, ErrFrameTooLarge) || cw.writes != 0 {
		t.Errorf("WriteFrame(too large) = %v after %d writes", err, cw.writes)
	}
	small := Frame{ID: 1, Payload: []byte("x")}
	if err := WriteFrame(shortWriter{}, small); err != io.ErrShortWrite {
		t.Errorf("WriteFrame(short writer) = %v", err)
	}
	linkDown := errors.New("link down")
	if err := WriteFrame(failWriter{linkDown}, small); err != linkDown {
		t.Errorf("WriteFrame(failing writer) = %v", err)
	}
}

func TestFrameCorruption(t *testing.T) {
	A := clean(t, mustAppendFrame(t, nil, 7, "alpha payload"))
	B := clean(t, mustAppendFrame(t, nil, 0xB0B, "bravo"))
	E := clean(t, mustAppendFrame(t, nil, 3, "")) // empty payload
	lenA, lenB := len(A), len(B)
	hasA := FrameError{HasID: true, ID: 7, Length: uint32(lenA - FrameOverhead)}
	with := func(e FrameError, kind FrameErrorKind, off int) FrameError {
		e.Kind, e.Offset = kind, int64(off)
		return e
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	mod := func(b []byte, i int, f func(byte) byte) []byte {
		b = bytes.Clone(b)
		b[i] = f(b[i])
		return b
	}
	flip := func(bit byte) func(byte) byte { return func(c byte) byte { return c ^ bit } }
	raw := func(version, flags byte, length uint32) []byte {
		return clean(t, frameAppendRaw(nil, version, flags, 9, length, []byte("xyz")))
	}
	rawLen := FrameOverhead + 3
	has9 := func(length uint32) FrameError { return FrameError{HasID: true, ID: 9, Length: length} }
	garbage := []byte("hello, world")
	g := len(garbage)

	long := clean(t, mustAppendFrame(t, nil, 12, strings.Repeat("long ", 20)))
	lenLong := len(long)

	tests := []struct {
		name   string
		stream []byte
		want   []frameEvent
	}{
		{"empty stream", nil, []frameEvent{evEnd(io.EOF)}},
		{"valid frames", cat(A, E, B), []frameEvent{
			evFrame(0, 7, "alpha payload"), evFrame(lenA, 3, ""), evFrame(lenA+len(E), 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"garbage before", cat(garbage, B), []frameEvent{
			evGarbage(0, g), evFrame(g, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"garbage between", cat(A, garbage, B), []frameEvent{
			evFrame(0, 7, "alpha payload"), evGarbage(lenA, g), evFrame(lenA+g, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"garbage after", cat(B, garbage), []frameEvent{
			evFrame(0, 0xB0B, "bravo"), evGarbage(lenB, g), evEnd(io.EOF)}},
		{"garbage ending in C before frame", cat([]byte("abC"), B), []frameEvent{
			evGarbage(0, 3), evFrame(3, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"false magic with bad version in garbage", cat([]byte("xxCFzz"), B), []frameEvent{
			evGarbage(0, 2),
			evErr(FrameError{Kind: FrameBadVersion, Offset: 2, Version: 'z'}),
			evGarbage(4, 2),
			evFrame(6, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"false magic overlapping the next frame", cat([]byte("xxCF\x01abc"), B), []frameEvent{
			evGarbage(0, 2),
			evErr(FrameError{Kind: FrameBadHeader, Offset: 2}),
			evGarbage(4, 4),
			evFrame(8, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"two magics", cat([]byte("CFCF"), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadVersion, Offset: 0, Version: 'C'}),
			evErr(FrameError{Kind: FrameBadVersion, Offset: 2, Version: 'C'}),
			evFrame(4, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"bad version 2", cat(raw(2, 0, 3), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadVersion, Offset: 0, Version: 2}),
			evGarbage(2, rawLen-2),
			evFrame(rawLen, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"bad version 0", cat(mod(A, 2, func(byte) byte { return 0 }), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadVersion, Offset: 0, Version: 0}),
			evGarbage(2, lenA-2),
			evFrame(lenA, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"bad flags", cat(raw(1, 0x80, 3), B), []frameEvent{
			evErr(with(FrameError{Flags: 0x80, HasID: true, ID: 9, Length: 3}, FrameBadFlags, 0)),
			evGarbage(2, rawLen-2),
			evFrame(rawLen, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"flags corrupted in transit", cat(mod(A, 3, flip(1)), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadHeader, Offset: 0}),
			evGarbage(2, lenA-2),
			evFrame(lenA, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"oversized length", cat(raw(1, 0, MaxPayload+1), B), []frameEvent{
			evErr(with(has9(MaxPayload+1), FrameTooLarge, 0)),
			evGarbage(2, rawLen-2),
			evFrame(rawLen, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"maximal length", cat(raw(1, 0, math.MaxUint32), B), []frameEvent{
			evErr(with(has9(math.MaxUint32), FrameTooLarge, 0)),
			evGarbage(2, rawLen-2),
			evFrame(rawLen, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"length corrupted in transit", cat(mod(A, 11, flip(0x40)), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadHeader, Offset: 0}),
			evGarbage(2, lenA-2),
			evFrame(lenA, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"id corrupted in transit", cat(mod(A, 5, flip(4)), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadHeader, Offset: 0}),
			evGarbage(2, lenA-2),
			evFrame(lenA, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"payload corrupted", cat(mod(A, 20, flip(0x10)), B), []frameEvent{
			evErr(with(hasA, FrameBadChecksum, 0)),
			evGarbage(2, lenA-2),
			evFrame(lenA, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"checksum corrupted", cat(mod(A, lenA-1, flip(0x80)), B), []frameEvent{
			evErr(with(hasA, FrameBadChecksum, 0)),
			evGarbage(2, lenA-2),
			evFrame(lenA, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"empty payload checksum corrupted", cat(mod(E, 16, flip(1)), B), []frameEvent{
			evErr(FrameError{Kind: FrameBadChecksum, Offset: 0, HasID: true, ID: 3}),
			evGarbage(2, len(E)-2),
			evFrame(len(E), 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"truncated payload before frame", cat(A[:lenA-5], B), []frameEvent{
			evErr(with(hasA, FrameBadChecksum, 0)),
			evGarbage(2, lenA-5-2),
			evFrame(lenA-5, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"truncated header before frame", cat(A[:10], B), []frameEvent{
			evErr(FrameError{Kind: FrameBadHeader, Offset: 0}),
			evGarbage(2, 8),
			evFrame(10, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"lone magic before frame", cat(A[:2], B), []frameEvent{
			evErr(FrameError{Kind: FrameBadVersion, Offset: 0, Version: 'C'}),
			evFrame(2, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"truncated frame and a shorter frame at the end", cat(long[:50], B), []frameEvent{
			evErr(FrameError{Kind: FrameTruncated, Offset: 0, HasID: true, ID: 12, Length: uint32(lenLong - FrameOverhead)}),
			evGarbage(2, 48),
			evFrame(50, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"truncated header and a shorter frame at the end", cat(long[:8], B[:12], B), []frameEvent{
			evErr(FrameError{Kind: FrameBadHeader, Offset: 0}),
			evGarbage(2, 6),
			evErr(FrameError{Kind: FrameBadHeader, Offset: 8}),
			evGarbage(10, 10),
			evFrame(20, 0xB0B, "bravo"), evEnd(io.EOF)}},
		{"frame then truncated frame", cat(B, A[:lenA-1]), []frameEvent{
			evFrame(0, 0xB0B, "bravo"), evEnd(io.ErrUnexpectedEOF)}},
		{"garbage then truncated magic", []byte("xxC"), []frameEvent{
			evGarbage(0, 2), evEnd(io.ErrUnexpectedEOF)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkStream(t, tt.stream, tt.want) })
	}
}

func TestFrameEOFMidFrame(t *testing.T) {
	A := clean(t, mustAppendFrame(t, nil, 7, "alpha payload"))
	B := clean(t, mustAppendFrame(t, nil, 0xB0B, "bravo"))
	for cut := 1; cut < len(A); cut++ {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			checkStream(t, A[:cut], []frameEvent{evEnd(io.ErrUnexpectedEOF)})
			stream := append(bytes.Clone(B), A[:cut]...)
			checkStream(t, stream, []frameEvent{evFrame(0, 0xB0B, "bravo"), evEnd(io.ErrUnexpectedEOF)})
		})
	}
}

func TestFrameLongGarbage(t *testing.T) {
	// 100 KiB without a 'C', then a frame: reported in pieces of at most
	// frameGarbageLimit bytes, covering every byte exactly once.
	const n = 100 << 10
	rng := rand.New(rand.NewChaCha8([32]byte{3}))
	stream := make([]byte, n)
	for i := range stream {
		for stream[i] = byte(rng.Uint32()); stream[i] == frameMagic0; stream[i] = byte(rng.Uint32()) {
		}
	}
	stream = mustAppendFrame(t, stream, 1, "after")
	var want []frameEvent
	for off := 0; off < n; off += frameGarbageLimit {
		want = append(want, evGarbage(off, min(frameGarbageLimit, n-off)))
	}
	want = append(want, evFrame(n, 1, "after"), evEnd(io.EOF))
	for _, v := range frameReaderVariants {
		t.Run(v.name, func(t *testing.T) {
			checkFrameEvents(t, readFrameEvents(t, v.wrap(stream), len(stream)), want)
		})
	}
}

// TestFrameRandomCorruption checks the resynchronisation promise: damaging
// some frames of a stream costs those frames only.
func TestFrameRandomCorruption(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{4}))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for round := range 20 {
		var stream []byte
		var want []frameEvent
		for id := range uint32(60) {
			var n int
			if rng.IntN(10) == 0 {
				n = rng.IntN(MaxPayload + 1)
			} else {
				n = rng.IntN(100)
			}
			p := randBytes(n)
			if rng.IntN(4) == 0 {
				p = append(p, "CF\x01"...) // a false magic in the payload
			}
			f := mustAppendFrame(t, nil, id, string(p))
			switch rng.IntN(8) {
			case 0: // one bit flipped
				f[rng.IntN(len(f))] ^= 1 << rng.IntN(8)
			case 1: // cut short
				f = f[:rng.IntN(len(f))]
			case 2: // a byte lost
				i := rng.IntN(len(f))
				f = append(f[:i], f[i+1:]...)
			case 3: // a burst of noise overwriting part of it
				i := rng.IntN(len(f))
				for j := i; j < min(len(f), i+1+rng.IntN(40)); j++ {
					f[j] ^= byte(1 + rng.IntN(255))
				}
			case 4: // noise between frames: the frame itself is intact
				stream = append(stream, randBytes(rng.IntN(40))...)
				fallthrough
			default:
				want = append(want, frameEvent{frame: Frame{ID: id, Payload: bytes.Clone(p)}, off: int64(len(stream))})
				if len(p) == 0 {
					want[len(want)-1].frame.Payload = nil
				}
			}
			stream = append(stream, f...)
		}
		for _, v := range frameReaderVariants {
			if v.name == "onebyte" && round > 2 {
				continue
			}
			var got []frameEvent
			for _, ev := range readFrameEvents(t, v.wrap(stream), len(stream)) {
				if ev.err == nil {
					got = append(got, ev)
				}
			}
			checkFrameEvents(t, got, want)
		}
	}
}

// scriptReader returns one chunk per Read and counts the calls; it stands
// for a link where the peer sends nothing more until it gets a reply.
type scriptReader struct {
	chunks [][]byte
	reads  int
	given  int
}

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	s.reads++
	n := copy(p, s.chunks[0])
	s.given += n
	if s.chunks[0] = s.chunks[0][n:]; len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

func TestFrameNoReadBeyondCompleteFrame(t *testing.T) {
	var frames [][]byte
	for i := range 4 {
		frames = append(frames, mustAppendFrame(t, nil, uint32(i), strings.Repeat("p", i*10)))
	}
	t.Run("frame per read", func(t *testing.T) {
		s := &scriptReader{}
		for _, f := range frames {
			s.chunks = append(s.chunks, bytes.Clone(f))
		}
		fr := NewFrameReader(s)
		for i := range frames {
			f, err := fr.Next()
			if err != nil || f.ID != uint32(i) {
				t.Fatalf("Next = %v, %v", f, err)
			}
			if s.reads != i+1 {
				t.Fatalf("frame %d returned after %d reads", i, s.reads)
			}
		}
	})
	t.Run("byte per read", func(t *testing.T) {
		s := &scriptReader{}
		stream := bytes.Join(append([][]byte{[]byte("noise")}, frames...), nil)
		for i := range stream {
			s.chunks = append(s.chunks, stream[i:i+1])
		}
		fr := NewFrameReader(s)
		if _, err := fr.Next(); !IsRecoverable(err) {
			t.Fatalf("Next = %v, want garbage", err)
		}
		end := len("noise")
		for i, f := range frames {
			got, err := fr.Next()
			if err != nil || got.ID != uint32(i) {
				t.Fatalf("Next = %v, %v", got, err)
			}
			end += len(f)
			if s.given != end {
				t.Fatalf("frame %d ending at byte %d returned after reading %d bytes", i, end, s.given)
			}
		}
	})
}

// A corrupted length must not make the reader wait for a payload that will
// never come: the header checksum rejects it as soon as the header is in.
func TestFrameCorruptLengthDoesNotStall(t *testing.T) {
	A := mustAppendFrame(t, nil, 7, "alpha")
	binary.BigEndian.PutUint32(A[8:12], 9000) // within MaxPayload
	s := &scriptReader{chunks: [][]byte{A[:frameHeaderLen]}}
	fr := NewFrameReader(s)
	_, err := fr.Next()
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Kind != FrameBadHeader {
		t.Fatalf("Next = %v, want bad header", err)
	}
	if s.reads != 1 {
		t.Fatalf("%d reads, want 1", s.reads)
	}
}

// allocatedBy returns the fewest bytes f allocated in a few runs (the
// minimum filters out allocations by the rest of the process).
func allocatedBy(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

func TestFrameHugeLengthAllocatesLittle(t *testing.T) {
	B := mustAppendFrame(t, nil, 0xB0B, "bravo")
	for _, length := range []uint32{MaxPayload + 1, 1 << 20, 1 << 31, math.MaxUint32} {
		stream := frameAppendRaw(nil, FrameVersion, 0, 5, length, nil)[:frameHeaderLen]
		stream = append(stream, B...)
		var err1, err2, err3 error
		var f Frame
		d := allocatedBy(func() {
			fr := NewFrameReader(bytes.NewReader(stream))
			_, err1 = fr.Next()
			_, err2 = fr.Next()
			f, err3 = fr.Next()
		})
		var fe *FrameError
		if !errors.As(err1, &fe) || fe.Kind != FrameTooLarge || fe.Length != length || !fe.HasID || fe.ID != 5 {
			t.Fatalf("length %d: Next = %v, want too large", length, err1)
		}
		if !IsRecoverable(err2) || err3 != nil || f.ID != 0xB0B {
			t.Fatalf("length %d: then %v, %v, %v", length, err2, f, err3)
		}
		if d > 4<<10 {
			t.Errorf("length %d: allocated %d bytes", length, d)
		}
	}
}

func TestFrameSteadyStateAllocation(t *testing.T) {
	payload := strings.Repeat("m", MaxPayload)
	var stream []byte
	for i := range 1 + 5*5 {
		stream = mustAppendFrame(t, stream, uint32(i), payload)
	}
	fr := NewFrameReader(bytes.NewReader(stream))
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	// Each frame costs its payload copy, and the buffer is not reallocated.
	const n = 5
	var err error
	d := allocatedBy(func() {
		for range n {
			if _, e := fr.Next(); e != nil {
				err = e
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d > n*(MaxPayload+1<<10) {
		t.Errorf("%d max-size frames allocated %d bytes", n, d)
	}
}

// errReader returns all its data and then err, in one call.
type errReader struct {
	data []byte
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	n := copy(p, e.data)
	e.data = e.data[n:]
	if len(e.data) == 0 {
		return n, e.err
	}
	return n, nil
}

func TestFrameReadError(t *testing.T) {
	A := mustAppendFrame(t, nil, 7, "alpha")
	B := mustAppendFrame(t, nil, 8, "bravo")
	linkDown := errors.New("link down")
	stream := append(bytes.Clone(A), B...)
	// Complete frames read together with the error come first.
	evs := readFrameEvents(t, &errReader{stream, linkDown}, len(stream))
	checkFrameEvents(t, evs, []frameEvent{evFrame(0, 7, "alpha"), evFrame(len(A), 8, "bravo"), evEnd(linkDown)})
	// A frame cut by the error ends in the error, not io.ErrUnexpectedEOF.
	stream = stream[:len(stream)-3]
	evs = readFrameEvents(t, iotest.OneByteReader(&errReader{stream, linkDown}), len(stream))
	checkFrameEvents(t, evs, []frameEvent{evFrame(0, 7, "alpha"), evEnd(linkDown)})
	evs = readFrameEvents(t, iotest.TimeoutReader(bytes.NewReader(stream)), len(stream))
	checkFrameEvents(t, evs, []frameEvent{evFrame(0, 7, "alpha"), evEnd(iotest.ErrTimeout)})
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestFrameNoProgress(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := NewFrameReader(emptyReader{}).Next()
		done <- err
	}()
	select {
	case err := <-done:
		if err != io.ErrNoProgress {
			t.Fatalf("Next = %v, want io.ErrNoProgress", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next hangs on a reader that returns nothing")
	}
}

func TestFrameIsRecoverable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, false},
		{io.ErrUnexpectedEOF, false},
		{ErrFrameTooLarge, false},
		{&FrameError{Kind: FrameBadChecksum}, true},
		{fmt.Errorf("wrapped: %w", &FrameError{Kind: FrameGarbage}), true},
	} {
		if got := IsRecoverable(tt.err); got != tt.want {
			t.Errorf("IsRecoverable(%v) = %v", tt.err, got)
		}
	}
}

func TestFrameErrorStrings(t *testing.T) {
	for _, tt := range []struct {
		err  FrameError
		want string
	}{
		{FrameError{Kind: FrameGarbage, Offset: 3, Skipped: 5}, "protocol: skipped 5 bytes of garbage at offset 3"},
		{FrameError{Kind: FrameBadVersion, Offset: 9, Version: 2}, "protocol: frame at offset 9: bad version 2 (want 1)"},
		{FrameError{Kind: FrameBadHeader}, "protocol: frame at offset 0: bad header checksum"},
		{FrameError{Kind: FrameBadFlags, Flags: 0x80, HasID: true, ID: 4}, "protocol: frame at offset 0: bad flags 0x80 (id 4)"},
		{FrameError{Kind: FrameTooLarge, Length: 1 << 20, HasID: true, ID: 4}, "protocol: frame at offset 0: payload too large: 1048576 bytes (max 16384) (id 4)"},
		{FrameError{Kind: FrameBadChecksum, Offset: 1, HasID: true, ID: 4}, "protocol: frame at offset 1: bad checksum (id 4)"},
		{FrameError{Kind: FrameTruncated}, "protocol: frame at offset 0: truncated"},
		{FrameError{Kind: 99}, "protocol: frame at offset 0: FrameErrorKind(99)"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

// Test vectors, written by an independent implementation
// (testdata/frames/gen_vectors.py).
type frameVectorFile struct {
	Vectors []struct {
		Name   string `json:"name"`
		Stream string `json:"stream"`
		Frame  *struct {
			Version   byte   `json:"version"`
			Flags     byte   `json:"flags"`
			ID        uint32 `json:"id"`
			Length    uint32 `json:"length"`
			HeaderCRC string `json:"header_crc"`
			Payload   string `json:"payload"`
			CRC       string `json:"crc"`
		} `json:"frame"`
		Events []struct {
			Event   string  `json:"event"`
			Offset  int64   `json:"offset"`
			ID      *uint32 `json:"id"`
			Length  uint32  `json:"length"`
			Payload string  `json:"payload"`
			Skipped int     `json:"skipped"`
			Version byte    `json:"version"`
			Flags   byte    `json:"flags"`
		} `json:"events"`
	} `json:"vectors"`
}

func TestFrameVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "frames", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file frameVectorFile
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) < 10 {
		t.Fatalf("only %d vectors", len(file.Vectors))
	}
	unhex := func(t *testing.T, s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	kinds := map[string]FrameErrorKind{}
	for k := FrameGarbage; k <= FrameTruncated; k++ {
		kinds[k.String()] = k
	}
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			stream := unhex(t, v.Stream)
			if f := v.Frame; f != nil {
				// The decoded fields, and the encoder reproducing the stream.
				payload := unhex(t, f.Payload)
				hdr := []byte{'C', 'F', f.Version, f.Flags}
				hdr = binary.BigEndian.AppendUint32(hdr, f.ID)
				hdr = binary.BigEndian.AppendUint32(hdr, f.Length)
				hdr = append(hdr, unhex(t, f.HeaderCRC)...)
				want := append(append(hdr, payload...), unhex(t, f.CRC)...)
				if !bytes.Equal(stream, want) {
					t.Fatalf("fields do not match the stream")
				}
				if len(v.Events) == 2 && v.Events[0].Event == "frame" {
					enc := mustAppendFrame(t, nil, f.ID, string(payload))
					if !bytes.Equal(enc, stream) {
						t.Fatalf("AppendFrame = %x, want %x", enc, stream)
					}
				}
			}
			var want []frameEvent
			for _, e := range v.Events {
				switch e.Event {
				case "frame":
					var p []byte
					if e.Payload != "" {
						p = unhex(t, e.Payload)
					}
					want = append(want, frameEvent{frame: Frame{ID: *e.ID, Payload: p}, off: e.Offset})
				case "EOF":
					want = append(want, evEnd(io.EOF))
				case "unexpected EOF":
					want = append(want, evEnd(io.ErrUnexpectedEOF))
				default:
					k, ok := kinds[e.Event]
					if !ok {
						t.Fatalf("unknown event %q", e.Event)
					}
					fe := FrameError{Kind: k, Offset: e.Offset, Skipped: e.Skipped, Version: e.Version, Flags: e.Flags}
					if e.ID != nil {
						fe.HasID, fe.ID, fe.Length = true, *e.ID, e.Length
					}
					want = append(want, evErr(fe))
				}
			}
			checkStream(t, stream, want)
		})
	}
}
