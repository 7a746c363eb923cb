package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func frameFuzzSeeds(tb testing.TB) [][]byte {
	A := mustAppendFrame(tb, nil, 7, "alpha payload")
	B := mustAppendFrame(tb, nil, 0xB0B, "bravo")
	E := mustAppendFrame(tb, nil, 0, "")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flipped := bytes.Clone(A)
	flipped[20] ^= 4
	return [][]byte{
		nil,
		A,
		E,
		// Large inputs make the fuzzer spend its time minimising them, so
		// maximal frames are left to the unit tests and FuzzFrameRoundTrip;
		// a header declaring MaxPayload stands for them here.
		cat(frameAppendRaw(nil, 1, 0, 1, MaxPayload, nil)[:frameHeaderLen], []byte("short")),
		cat(A, B, E),
		cat([]byte("garbage"), A, []byte("more garbage"), B),
		cat([]byte("xxCFzz"), A),
		cat([]byte("CF\x01"), B),
		cat(A[:len(A)-3], B),
		cat(A[:9], B),
		cat(flipped, B),
		cat(frameAppendRaw(nil, 2, 0, 3, 3, []byte("xyz")), B),
		cat(frameAppendRaw(nil, 1, 1, 3, 3, []byte("xyz")), B),
		frameAppendRaw(nil, 1, 0, 3, MaxPayload+1, nil)[:frameHeaderLen],
		cat(frameAppendRaw(nil, 1, 0, 3, 0xFFFFFFFF, nil)[:frameHeaderLen], A),
		[]byte("CFCFCFCFCFCF"),
		[]byte("C"),
	}
}

// FuzzFrameReader reads arbitrary bytes. It checks that the reader ends
// (each call consumes input), that every frame it returns is at most
// MaxPayload and re-encodes to the very bytes of the input it came from, and
// that the results do not depend on how the bytes are split between reads.
func FuzzFrameReader(f *testing.F) {
	for _, s := range frameFuzzSeeds(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(6))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		whole := readFrameEvents(t, bytes.NewReader(data), len(data))
		var split io.Reader = &chunkReader{bytes.NewReader(data), int(chunk) + 1}
		if chunk == 0 {
			split = iotest.OneByteReader(bytes.NewReader(data))
		}
		checkFrameEvents(t, readFrameEvents(t, split, len(data)), whole)

		last := int64(0) // frames do not overlap, and come in order
		for i, ev := range whole {
			var fe *FrameError
			switch {
			case ev.err == nil:
				if len(ev.frame.Payload) > MaxPayload {
					t.Fatalf("frame with %d-byte payload", len(ev.frame.Payload))
				}
				enc, err := AppendFrame(nil, ev.frame)
				if err != nil {
					t.Fatal(err)
				}
				if ev.off < last || ev.off+int64(len(enc)) > int64(len(data)) ||
					!bytes.Equal(data[ev.off:ev.off+int64(len(enc))], enc) {
					t.Fatalf("frame %v does not re-encode to the input at its offset", ev)
				}
				last = ev.off + int64(len(enc))
			case errors.As(ev.err, &fe):
				if fe.Offset < last || fe.Offset >= int64(len(data)) {
					t.Fatalf("error %v at offset outside [%d, %d)", fe, last, len(data))
				}
				if (fe.Kind == FrameGarbage) != (fe.Skipped > 0) || fe.Skipped > frameGarbageLimit {
					t.Fatalf("error %v skipped %d bytes", fe, fe.Skipped)
				}
			case i != len(whole)-1:
				t.Fatalf("final error %v before the last event", ev.err)
			case ev.err != io.EOF && ev.err != io.ErrUnexpectedEOF:
				t.Fatalf("final error %v from a bytes.Reader", ev.err)
			}
		}
	})
}

// FuzzFrameRoundTrip encodes a frame and reads it back, then checks that
// flipping any one bit of it is detected: the frame is not returned, and
// the first thing Next reports is a recoverable error.
//
// The payload is size bytes of pattern repeated (zeros if pattern is
// empty; only its first 256 bytes are used), so that frames up to and past
// MaxPayload come from inputs of a few bytes. With the payload itself as a
// fuzzed []byte, as before, seeds of 16 KiB made Go's minimiser spend its
// whole -fuzzminimizetime (60 s) on every interesting input derived from
// them, in a pass quadratic in its length, while the fuzzer reported 0
// executions a second; one execution of a maximal frame takes about 60 us.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add(uint32(0), []byte(nil), uint16(0), uint32(0))
	f.Add(uint32(7), []byte("alpha payload"), uint16(13), uint32(170))
	f.Add(uint32(0xFFFFFFFF), []byte("CF\x01\x00"), uint16(4), uint32(12))
	f.Add(uint32(1), []byte{0xA5}, uint16(MaxPayload), uint32(99999))
	f.Add(uint32(2), frameAppendRaw(nil, 1, 0, 3, MaxPayload, nil)[:frameHeaderLen], uint16(MaxPayload), uint32(12345))
	f.Add(uint32(1), []byte(nil), uint16(MaxPayload+1), uint32(0))
	f.Fuzz(func(t *testing.T, id uint32, pattern []byte, size uint16, bit uint32) {
		payload := repeatPattern(pattern, int(size))
		enc, err := AppendFrame(nil, Frame{ID: id, Payload: payload})
		if len(payload) > MaxPayload {
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("AppendFrame(%d bytes) error = %v", len(payload), err)
			}
			return
		}
		if err != nil || len(enc) != FrameOverhead+len(payload) {
			t.Fatalf("AppendFrame = %d bytes, %v", len(enc), err)
		}
		var w bytes.Buffer
		if err := WriteFrame(&w, Frame{ID: id, Payload: payload}); err != nil || !bytes.Equal(w.Bytes(), enc) {
			t.Fatalf("WriteFrame differs from AppendFrame (%v)", err)
		}
		if len(payload) == 0 {
			payload = nil
		}
		readers := []io.Reader{bytes.NewReader(enc)}
		if len(enc) <= 1<<10 { // FuzzFrameReader covers other splits
			readers = append(readers, iotest.OneByteReader(bytes.NewReader(enc)))
		}
		for _, r := range readers {
			checkFrameEvents(t, readFrameEvents(t, r, len(enc)),
				[]frameEvent{{frame: Frame{ID: id, Payload: payload}}, evEnd(io.EOF)})
		}

		bad := bytes.Clone(enc)
		i := int(bit/8) % len(bad)
		bad[i] ^= 1 << (bit % 8)
		evs := readFrameEvents(t, bytes.NewReader(bad), len(bad))
		if !IsRecoverable(evs[0].err) {
			t.Fatalf("bit %d of byte %d flipped: first event %v", bit%8, i, evs[0])
		}
		for _, ev := range evs {
			if ev.err == nil && ev.frame.ID == id && bytes.Equal(ev.frame.Payload, payload) {
				t.Fatalf("bit %d of byte %d flipped: frame still returned", bit%8, i)
			}
		}
	})
}

// repeatPattern returns n bytes of pattern's first 256 bytes repeated, or
// of zeros if pattern is empty.
func repeatPattern(pattern []byte, n int) []byte {
	pattern = pattern[:min(len(pattern), 256)]
	if len(pattern) == 0 {
		return make([]byte, n)
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, pattern[:min(len(pattern), n-len(out))]...)
	}
	return out
}
