package tos

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/internal/storage"
)

// Buffer is the applet memory lent to one call: the glue has already checked
// that all of it lies inside the applet's region. Read and Write copy at an
// offset inside it; they are never given a range outside [0, Len()).
type Buffer interface {
	Len() int
	Read(off int, p []byte)
	Write(off int, p []byte)
}

// SliceBuffer is a Buffer over a byte slice (tests, and the applet side of
// in-process runs).
type SliceBuffer []byte

func (b SliceBuffer) Len() int                { return len(b) }
func (b SliceBuffer) Read(off int, p []byte)  { copy(p, b[off:]) }
func (b SliceBuffer) Write(off int, p []byte) { copy(b[off:], p) }

// Service answers the applet's calls. One Service serves successive starts
// of the applet (Start resets what is per start).
type Service struct {
	// Config is given to the applet by OpConfig (Boot is set by Start).
	Config api.Config
	// Device is the record store's block device.
	Device storage.Device
	// Anchor is the record store's anchor: the OS's own, in its RPMB
	// partition (OpenAnchor). The applet reads and writes the block, never
	// RPMB frames, and never holds the RPMB key.
	Anchor storage.Anchor
	// Rand supplies the applet's randomness.
	Rand io.Reader
	// Relay carries requests and replies.
	Relay *Relay
	// Console prints one line from the applet (its log, prints and panics).
	Console func(line string)
	// Ready is called with the applet's status line when it reports ready.
	Ready func(status string)
	// MaxWait bounds one OpWait (1 s if zero), so that the OS regains
	// control regularly.
	MaxWait time.Duration

	mu          sync.Mutex
	boot        uint32
	configGiven bool
	exitCode    int32
	exited      bool
	line        []byte // SysWrite characters of the current line
	calls       [opCount]uint64
}

const opCount = 32

// Start prepares for a new start of the applet.
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.boot++
	s.configGiven = false
	s.exited = false
	s.exitCode = 0
	s.line = s.line[:0]
}

// Exited reports whether the applet asked to exit, and with which code.
func (s *Service) Exited() (bool, int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited, s.exitCode
}

// Call performs operation op with buffer buf and returns the value for r0.
// stop asks the caller to stop the applet (it exited).
func (s *Service) Call(op uint32, buf Buffer) (r int32, stop bool) {
	if i := op - api.OpBase; op >= api.OpBase && i < opCount {
		s.mu.Lock()
		s.calls[i]++
		s.mu.Unlock()
	}
	n := buf.Len()
	if n < 0 || n > api.MaxBuffer {
		return int32(api.EINVAL), false
	}
	switch op {
	case api.OpConfig:
		return s.config(buf), false
	case api.OpReady:
		if n > api.MaxLog {
			return int32(api.EINVAL), false
		}
		line := readString(buf)
		if s.Ready != nil {
			s.Ready(line)
		}
		return 0, false
	case api.OpRecv:
		return s.recv(buf), false
	case api.OpSend:
		return s.send(buf), false
	case api.OpWait:
		if n != api.WaitSize {
			return int32(api.EINVAL), false
		}
		var b [api.WaitSize]byte
		buf.Read(0, b[:])
		d := time.Duration(min(binary.BigEndian.Uint64(b[:]), uint64(time.Hour)))
		flags := binary.BigEndian.Uint32(b[8:])
		if flags&^api.WaitRequest != 0 {
			return int32(api.EINVAL), false
		}
		if max := s.maxWait(); d > max {
			d = max
		}
		if flags&api.WaitRequest != 0 && s.Relay != nil {
			if s.Relay.Wait(d) {
				return 1, false
			}
			return 0, false
		}
		if d > 0 {
			time.Sleep(d)
		}
		return 0, false
	case api.OpReadSectors, api.OpWriteSectors:
		return s.sectors(op, buf), false
	case api.OpFlush:
		if n != 0 {
			return int32(api.EINVAL), false
		}
		if s.Device == nil || s.Device.Flush() != nil {
			return int32(api.EIO), false
		}
		return 0, false
	case api.OpAnchorRead, api.OpAnchorWrite:
		if n != api.AnchorCallSize || s.Anchor == nil {
			return int32(api.EINVAL), false
		}
		return s.anchor(op, buf), false
	case api.OpRandom, api.SysGetRandom:
		if n < 1 || n > api.MaxRandom || s.Rand == nil {
			return int32(api.EINVAL), false
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(s.Rand, b); err != nil {
			return int32(api.EIO), false
		}
		buf.Write(0, b)
		clear(b)
		return int32(n), false
	case api.OpLog:
		if n > api.MaxLog {
			return int32(api.EINVAL), false
		}
		s.console(readString(buf))
		return 0, false
	case api.OpExit:
		if n != 4 {
			return int32(api.EINVAL), false
		}
		var b [4]byte
		buf.Read(0, b[:])
		s.mu.Lock()
		s.exited, s.exitCode = true, int32(binary.BigEndian.Uint32(b[:]))
		s.mu.Unlock()
		return 0, true
	case api.SysExit:
		s.mu.Lock()
		s.exited = true
		s.mu.Unlock()
		return 0, true
	}
	return int32(api.ENOSYS), false
}

// PrintChar handles GoTEE's SysWrite (one character, not a buffer): the
// applet runtime's printk for panics and early messages.
func (s *Service) PrintChar(c byte) {
	s.mu.Lock()
	if c != '\n' && len(s.line) < api.MaxLog {
		s.line = append(s.line, c)
		s.mu.Unlock()
		return
	}
	line := string(s.line)
	s.line = s.line[:0]
	s.mu.Unlock()
	s.console(line)
}

func (s *Service) console(line string) {
	if s.Console != nil {
		s.Console(sanitize(line))
	}
}

func (s *Service) maxWait() time.Duration {
	if s.MaxWait > 0 {
		return s.MaxWait
	}
	return time.Second
}

func (s *Service) config(buf Buffer) int32 {
	if buf.Len() != api.ConfigSize {
		return int32(api.EINVAL)
	}
	s.mu.Lock()
	if s.configGiven {
		s.mu.Unlock()
		return int32(api.EPERM)
	}
	s.configGiven = true
	c := s.Config
	c.Boot = s.boot
	s.mu.Unlock()
	b := c.Encode()
	buf.Write(0, b)
	clear(b)
	c.Wipe()
	return 0
}

// anchor serves OpAnchorRead and OpAnchorWrite (the buffer size is checked).
func (s *Service) anchor(op uint32, buf Buffer) int32 {
	var b [api.AnchorCallSize]byte
	defer clear(b[:])
	var data [storage.AnchorSize]byte
	defer clear(data[:])
	var counter uint32
	var err error
	if op == api.OpAnchorRead {
		data, counter, err = s.Anchor.Read()
	} else {
		buf.Read(0, b[:])
		copy(data[:], b[4:])
		counter, err = s.Anchor.Write(data)
	}
	if err != nil {
		var t interface{ Tampered() bool }
		if errors.As(err, &t) && t.Tampered() {
			return int32(api.ETAMPERED)
		}
		return int32(api.EIO)
	}
	binary.BigEndian.PutUint32(b[:], counter)
	if op == api.OpAnchorRead {
		copy(b[4:], data[:])
		buf.Write(0, b[:])
	} else {
		buf.Write(0, b[:4])
	}
	return 0
}

func (s *Service) recv(buf Buffer) int32 {
	if buf.Len() < api.MaxMessage {
		return int32(api.EINVAL)
	}
	if s.Relay == nil {
		return 0
	}
	tag, req, ok := s.Relay.Next()
	if !ok {
		return 0
	}
	if len(req) > api.MaxMessage-api.TagSize {
		// Cannot happen: the framing layer bounds payloads. Answer it
		// rather than hand the applet more than it asked for.
		s.Relay.Reply(tag, nil)
		return 0
	}
	var t [api.TagSize]byte
	api.PutTag(t[:], tag)
	buf.Write(0, t[:])
	buf.Write(api.TagSize, req)
	return int32(api.TagSize + len(req))
}

func (s *Service) send(buf Buffer) int32 {
	n := buf.Len()
	if n < api.TagSize || n > api.MaxMessage {
		return int32(api.EINVAL)
	}
	b := make([]byte, n)
	buf.Read(0, b)
	if s.Relay == nil || !s.Relay.Reply(api.Tag(b), b[api.TagSize:]) {
		return int32(api.EINVAL)
	}
	return 0
}

func (s *Service) sectors(op uint32, buf Buffer) int32 {
	k, err := api.SectorCallLen(buf.Len())
	if err != nil || s.Device == nil {
		return int32(api.EINVAL)
	}
	var h [api.SectorHeader]byte
	buf.Read(0, h[:])
	lba := binary.BigEndian.Uint64(h[:])
	if lba > s.Device.Sectors() || uint64(k) > s.Device.Sectors()-lba {
		return int32(api.ERANGE)
	}
	data := make([]byte, k*api.SectorSize)
	if op == api.OpReadSectors {
		if s.Device.ReadSectors(lba, data) != nil {
			return int32(api.EIO)
		}
		buf.Write(api.SectorHeader, data)
		return int32(k)
	}
	buf.Read(api.SectorHeader, data)
	if s.Device.WriteSectors(lba, data) != nil {
		return int32(api.EIO)
	}
	return int32(k)
}

// Calls returns how many times each Coffer operation was called.
func (s *Service) Calls() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]uint64{}
	for i, c := range s.calls {
		if c != 0 {
			m[api.OpName(uint32(api.OpBase+i))] = c
		}
	}
	return m
}

func readString(buf Buffer) string {
	b := make([]byte, buf.Len())
	buf.Read(0, b)
	return string(b)
}

// sanitize keeps a line printable: the applet's text goes to a console.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || (r >= 0x20 && r != 0x7f && r != 0xfffd) {
			return r
		}
		return '?'
	}, strings.TrimRight(s, "\r\n"))
}
