package protocol

// Framing of protocol messages on a byte stream (USB serial, UART, unix
// socket). The wire format is specified in FRAMING.md; keep the two in step.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
)

const (
	// FrameVersion is the framing version written and accepted (header byte 2).
	FrameVersion = 1

	// MaxPayload is the largest payload a frame may carry, in bytes. A frame
	// that declares a longer payload is rejected before any of it is read.
	MaxPayload = 16 << 10

	// FrameOverhead is the number of bytes a frame adds to its payload:
	// a 16-byte header and a 4-byte trailing checksum.
	FrameOverhead = frameHeaderLen + frameTrailerLen
)

// ErrFrameTooLarge is returned (wrapped) by AppendFrame and WriteFrame for a
// payload longer than MaxPayload. It is a caller error, not a stream error.
var ErrFrameTooLarge = errors.New("protocol: frame payload larger than MaxPayload")

const (
	frameMagic0     = 'C' // 0x43
	frameMagic1     = 'F' // 0x46
	frameHeaderLen  = 16  // magic 2, version 1, flags 1, id 4, length 4, header CRC 4
	frameTrailerLen = 4   // CRC-32C of header and payload
	frameMaxLen     = frameHeaderLen + MaxPayload + frameTrailerLen

	// frameInitialBuf is the reader's first buffer size; it grows (once, up
	// to frameMaxLen) only for a frame whose header checksum verified.
	frameInitialBuf = 1 << 10

	// frameGarbageLimit is the longest run of skipped bytes reported by one
	// FrameGarbage error, so that Next returns while garbage keeps coming.
	frameGarbageLimit = MaxPayload

	// frameMaxEmptyReads is how many consecutive (0, nil) reads the reader
	// tolerates before giving up with io.ErrNoProgress.
	frameMaxEmptyReads = 100
)

var (
	frameMagic    = []byte{frameMagic0, frameMagic1}
	frameCRCTable = crc32.MakeTable(crc32.Castagnoli)
)

// Frame is one framed message: the sender's request id and an opaque payload
// (a CBOR message). A reply carries the id of the request it answers.
type Frame struct {
	ID      uint32
	Payload []byte
}

// AppendFrame appends the encoding of f to dst and returns the extended
// slice. It fails, returning dst unchanged, if the payload is longer than
// MaxPayload.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if len(f.Payload) > MaxPayload {
		return dst, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(f.Payload))
	}
	return frameAppendRaw(dst, FrameVersion, 0, f.ID, uint32(len(f.Payload)), f.Payload), nil
}

// WriteFrame writes f to w with a single Write call, so that frames written
// by several goroutines to a writer that serialises its Write calls do not
// interleave.
func WriteFrame(w io.Writer, f Frame) error {
	if len(f.Payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(f.Payload))
	}
	b, err := AppendFrame(make([]byte, 0, FrameOverhead+len(f.Payload)), f)
	if err != nil {
		return err
	}
	n, err := w.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return err
}

// frameAppendRaw appends a frame with the given header fields, with correct
// checksums. length is written as given, whatever len(payload) is; tests use
// this to build frames no conforming sender would write.
func frameAppendRaw(dst []byte, version, flags byte, id, length uint32, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, frameMagic0, frameMagic1, version, flags)
	dst = binary.BigEndian.AppendUint32(dst, id)
	dst = binary.BigEndian.AppendUint32(dst, length)
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:start+12], frameCRCTable))
	dst = append(dst, payload...)
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], frameCRCTable))
	return dst
}

// FrameErrorKind says what a FrameReader rejected.
type FrameErrorKind uint8

const (
	// FrameGarbage: bytes that do not start a frame were skipped while
	// searching for the magic.
	FrameGarbage FrameErrorKind = iota + 1
	// FrameBadVersion: a magic followed by a version other than FrameVersion.
	FrameBadVersion
	// FrameBadHeader: the header checksum does not match (a corrupted
	// header, or a false magic inside other bytes).
	FrameBadHeader
	// FrameBadFlags: a verified header with reserved flags set.
	FrameBadFlags
	// FrameTooLarge: a verified header declaring more than MaxPayload bytes.
	FrameTooLarge
	// FrameBadChecksum: a verified header whose payload checksum does not
	// match (a corrupted or truncated payload).
	FrameBadChecksum
	// FrameTruncated: the stream ended inside a frame, and later bytes may
	// still hold a frame.
	FrameTruncated
)

var frameErrorKindNames = [...]string{
	FrameGarbage:     "garbage",
	FrameBadVersion:  "bad version",
	FrameBadHeader:   "bad header checksum",
	FrameBadFlags:    "bad flags",
	FrameTooLarge:    "payload too large",
	FrameBadChecksum: "bad checksum",
	FrameTruncated:   "truncated",
}

func (k FrameErrorKind) String() string {
	if int(k) < len(frameErrorKindNames) && frameErrorKindNames[k] != "" {
		return frameErrorKindNames[k]
	}
	return "FrameErrorKind(" + strconv.Itoa(int(k)) + ")"
}

// FrameError reports bytes a FrameReader rejected. It is recoverable: the
// reader has already skipped what it rejected, and the next call to Next
// continues with the following bytes.
//
// The id and length come from a header whose CRC verified (HasID), which
// protects against noise but not against a malicious host.
type FrameError struct {
	Kind FrameErrorKind
	// Offset is the stream offset (from the first byte the reader read) of
	// the first skipped byte for FrameGarbage, else of the frame's magic.
	Offset int64
	// Skipped is the number of bytes skipped, for FrameGarbage.
	Skipped int
	// Version is the version byte read, for FrameBadVersion.
	Version byte
	// Flags is the flags byte read, for FrameBadFlags.
	Flags byte
	// HasID reports that the header checksum verified, so that ID and Length
	// hold the header's request id and declared payload length.
	HasID  bool
	ID     uint32
	Length uint32
}

func (e *FrameError) Error() string {
	var b []byte
	b = append(b, "protocol: "...)
	if e.Kind == FrameGarbage {
		b = fmt.Appendf(b, "skipped %d bytes of garbage at offset %d", e.Skipped, e.Offset)
		return string(b)
	}
	b = fmt.Appendf(b, "frame at offset %d: %s", e.Offset, e.Kind)
	switch e.Kind {
	case FrameBadVersion:
		b = fmt.Appendf(b, " %d (want %d)", e.Version, FrameVersion)
	case FrameBadFlags:
		b = fmt.Appendf(b, " 0x%02x", e.Flags)
	case FrameTooLarge:
		b = fmt.Appendf(b, ": %d bytes (max %d)", e.Length, MaxPayload)
	}
	if e.HasID {
		b = fmt.Appendf(b, " (id %d)", e.ID)
	}
	return string(b)
}

// IsRecoverable reports whether err (or an error it wraps) is a *FrameError,
// after which FrameReader.Next may be called again. Errors from the stream
// (io.EOF, io.ErrUnexpectedEOF, read errors) are final.
func IsRecoverable(err error) bool {
	var fe *FrameError
	return errors.As(err, &fe)
}

// FrameReader reads frames from a byte stream, resynchronising after garbage
// or corruption. It is not safe for concurrent use.
//
// It buffers at most one maximal frame (MaxPayload+FrameOverhead bytes), and
// grows its buffer beyond 1 KiB only for a frame whose header checksum
// verified. Once it holds a complete frame, Next returns it without calling
// Read again, so a request/reply exchange never waits for bytes that the
// peer has no reason to send.
type FrameReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // buf[start:end] holds bytes read but not consumed
	off        int64 // stream offset of buf[start]

	skipped int   // garbage bytes skipped and not yet reported
	skipOff int64 // stream offset of the first of them

	rerr  error // error returned by r, acted on once buffered bytes run out
	final error // final error, returned by every later call to Next
}

// NewFrameReader returns a FrameReader reading from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: r}
}

// Next returns the next frame. The payload is a fresh slice owned by the
// caller (nil when empty).
//
// A *FrameError (see IsRecoverable) reports rejected bytes; call Next again
// to continue. Any other error is final and repeated by later calls: io.EOF
// at the end of the stream between frames, io.ErrUnexpectedEOF at the end of
// the stream inside a frame (preceded by a FrameTruncated error if a later
// magic could start another frame), io.ErrNoProgress if the underlying
// reader keeps returning nothing, or the error it returned.
//
// The exception is a read error wrapping os.ErrDeadlineExceeded, which
// callers use as an inter-byte timeout: it is never final. Between frames
// Next returns it as it is; inside a frame, the partial frame is reported as
// FrameTruncated and reading resumes after its magic.
func (r *FrameReader) Next() (Frame, error) {
	if r.final != nil {
		return Frame{}, r.final
	}
	for {
		f, need, err := r.decode()
		if need == 0 {
			return f, err
		}
		if r.rerr != nil {
			if errors.Is(r.rerr, os.ErrDeadlineExceeded) {
				err := r.rerr
				r.rerr = nil
				return Frame{}, r.stalled(err)
			}
			return Frame{}, r.ended()
		}
		r.fill(need)
	}
}

// decode takes one decision about the buffered bytes: a frame or a
// recoverable error, or else need > 0, the number of buffered bytes (from
// buf[start]) it needs to decide.
func (r *FrameReader) decode() (f Frame, need int, err error) {
	data := r.buf[r.start:r.end]
	i := bytes.Index(data, frameMagic)
	if i != 0 {
		// Skip bytes before the magic, or all of them but a trailing 'C'
		// that may begin one, but not more than one report's worth.
		k := i
		if i < 0 {
			k = len(data)
			if k > 0 && data[k-1] == frameMagic0 {
				k--
			}
		}
		k = min(k, frameGarbageLimit-r.skipped)
		r.skip(k)
		if r.skipped == frameGarbageLimit {
			return Frame{}, 0, r.garbage()
		}
		if i < 0 {
			return Frame{}, r.end - r.start + 1, nil
		}
	}
	if r.skipped > 0 {
		return Frame{}, 0, r.garbage()
	}

	// A candidate frame starts at buf[start].
	data = r.buf[r.start:r.end]
	off := r.off
	if len(data) < 3 {
		return Frame{}, 3, nil
	}
	if v := data[2]; v != FrameVersion {
		r.consume(len(frameMagic))
		return Frame{}, 0, &FrameError{Kind: FrameBadVersion, Offset: off, Version: v}
	}
	if len(data) < frameHeaderLen {
		return Frame{}, frameHeaderLen, nil
	}
	id, length, ok := frameParseHeader(data)
	if !ok {
		r.consume(len(frameMagic))
		return Frame{}, 0, &FrameError{Kind: FrameBadHeader, Offset: off}
	}
	reject := func(kind FrameErrorKind) error {
		r.consume(len(frameMagic))
		return &FrameError{Kind: kind, Offset: off, Flags: data[3], HasID: true, ID: id, Length: length}
	}
	if data[3] != 0 {
		return Frame{}, 0, reject(FrameBadFlags)
	}
	if length > MaxPayload { // compared as uint32: no overflow where int is 32 bits
		return Frame{}, 0, reject(FrameTooLarge)
	}
	total := frameHeaderLen + int(length) + frameTrailerLen
	if len(data) < total {
		return Frame{}, total, nil
	}
	body := data[:total-frameTrailerLen]
	if crc32.Checksum(body, frameCRCTable) != binary.BigEndian.Uint32(data[total-frameTrailerLen:]) {
		return Frame{}, 0, reject(FrameBadChecksum)
	}
	f.ID = id
	if length > 0 {
		f.Payload = bytes.Clone(body[frameHeaderLen:])
	}
	r.consume(total)
	return f, 0, nil
}

// frameParseHeader returns the id and declared payload length of a header
// (at least frameHeaderLen bytes), and whether its checksum verified.
func frameParseHeader(h []byte) (id, length uint32, ok bool) {
	if crc32.Checksum(h[:12], frameCRCTable) != binary.BigEndian.Uint32(h[12:16]) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(h[4:8]), binary.BigEndian.Uint32(h[8:12]), true
}

// ended is called when decode needs more bytes but the stream has ended
// (r.rerr is set). The buffered bytes are then either empty or a partial
// frame: a lone 'C', or a magic and less than a whole frame.
func (r *FrameReader) ended() error {
	if r.skipped > 0 {
		return r.garbage()
	}
	data := r.buf[r.start:r.end]
	if len(data) > len(frameMagic) && bytes.Contains(data[len(frameMagic):], frameMagic) {
		// Later bytes may hold a frame that the truncated one swallowed:
		// give up on this one and resume after its magic.
		e := &FrameError{Kind: FrameTruncated, Offset: r.off}
		if len(data) >= frameHeaderLen {
			e.ID, e.Length, e.HasID = frameParseHeader(data)
		}
		r.consume(len(frameMagic))
		return e
	}
	switch {
	case r.rerr != io.EOF:
		r.final = r.rerr
	case len(data) > 0:
		r.final = io.ErrUnexpectedEOF
	default:
		r.final = io.EOF
	}
	r.buf, r.start, r.end = nil, 0, 0
	return r.final
}

// stalled is called when a read timed out (the caller's read deadline, used
// as an inter-byte timeout). Between frames that is not an error of the
// stream: err is returned and reading may go on. Inside a frame it means the
// rest of the frame is not coming (a sender that died mid-frame, a cable
// pulled): the partial frame is given up as truncated, reading resumes after
// its magic, and later frames are not held hostage by its declared length.
func (r *FrameReader) stalled(err error) error {
	if r.skipped > 0 {
		return r.garbage()
	}
	data := r.buf[r.start:r.end]
	switch {
	case len(data) == 0:
		return err
	case len(data) < len(frameMagic):
		r.skip(len(data))
		return r.garbage()
	}
	e := &FrameError{Kind: FrameTruncated, Offset: r.off}
	if len(data) >= frameHeaderLen {
		e.ID, e.Length, e.HasID = frameParseHeader(data)
	}
	r.consume(len(frameMagic))
	return e
}

// fill makes room for need buffered bytes and reads once (retrying reads
// that return nothing). It sets r.rerr if the read fails.
func (r *FrameReader) fill(need int) {
	if len(r.buf)-r.start < need {
		if r.start > 0 {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		if len(r.buf) < need {
			size := min(max(need, 2*len(r.buf), frameInitialBuf), frameMaxLen)
			buf := make([]byte, size)
			r.end = copy(buf, r.buf[:r.end])
			r.buf = buf
		}
	}
	for range frameMaxEmptyReads {
		n, err := r.r.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.rerr = errors.New("protocol: invalid count from Read")
			return
		}
		r.end += n
		if err != nil {
			r.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.rerr = io.ErrNoProgress
}

// consume drops n buffered bytes.
func (r *FrameReader) consume(n int) {
	r.start += n
	r.off += int64(n)
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
}

// skip drops n buffered bytes as garbage, to be reported later.
func (r *FrameReader) skip(n int) {
	if n == 0 {
		return
	}
	if r.skipped == 0 {
		r.skipOff = r.off
	}
	r.skipped += n
	r.consume(n)
}

// garbage returns the report of the skipped bytes and resets it.
func (r *FrameReader) garbage() error {
	e := &FrameError{Kind: FrameGarbage, Offset: r.skipOff, Skipped: r.skipped}
	r.skipped = 0
	return e
}
