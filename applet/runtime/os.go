package taruntime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhsm/coffer/firmware/api"
)

// Syscall issues one call to the OS: operation op with buffer buf, returning
// r0. On the device it is a supervisor call; tests give a function.
type Syscall func(op uint32, buf []byte) int32

// OS is the applet's handle on the Trusted OS.
type OS struct {
	call Syscall
	park func(*OS) // WaitRequest's way of waiting
}

// NewOS returns a client that issues calls with call.
func NewOS(call Syscall) *OS { return &OS{call: call} }

func (o *OS) do(op uint32, buf []byte) (int, error) {
	return api.Result(o.call(op, buf))
}

// Config fetches this run's configuration (once per applet start). The
// caller wipes it (Config.Wipe) when done with the keys.
func (o *OS) Config() (*api.Config, error) {
	b := make([]byte, api.ConfigSize)
	defer clear(b)
	if _, err := o.do(api.OpConfig, b); err != nil {
		return nil, fmt.Errorf("taruntime: config: %w", err)
	}
	return api.DecodeConfig(b)
}

// Ready tells the OS the applet is serving; status is shown on its console.
func (o *OS) Ready(status string) error {
	_, err := o.do(api.OpReady, clip(status))
	return err
}

// Log prints one line on the OS console.
func (o *OS) Log(line string) {
	o.do(api.OpLog, clip(line))
}

func clip(s string) []byte {
	if len(s) > api.MaxLog {
		s = s[:api.MaxLog]
	}
	return []byte(s)
}

// Exit ends the applet with code. It returns only if the OS refused.
func (o *OS) Exit(code int) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	_, err := o.do(api.OpExit, b[:])
	return err
}

// Recv takes the next request, if one is waiting, into buf (at least
// api.MaxMessage bytes). The request aliases buf. A nil request means none
// is waiting.
func (o *OS) Recv(buf []byte) (tag uint32, request []byte, err error) {
	if len(buf) < api.MaxMessage {
		return 0, nil, errors.New("taruntime: receive buffer too small")
	}
	buf = buf[:api.MaxMessage]
	n, err := o.do(api.OpRecv, buf)
	if err != nil || n == 0 {
		return 0, nil, err
	}
	if n < api.TagSize || n > len(buf) {
		return 0, nil, fmt.Errorf("taruntime: the OS returned a request of %d bytes", n)
	}
	return api.Tag(buf), buf[api.TagSize:n], nil
}

// Send answers the request tagged tag.
func (o *OS) Send(tag uint32, reply []byte) error {
	if len(reply) > api.MaxMessage-api.TagSize {
		return errors.New("taruntime: reply too large")
	}
	b := make([]byte, api.TagSize+len(reply))
	api.PutTag(b, tag)
	copy(b[api.TagSize:], reply)
	_, err := o.do(api.OpSend, b)
	return err
}

// Wait blocks the whole applet in the OS for at most d, returning early
// (true) when wake is set and a request is waiting.
func (o *OS) Wait(d time.Duration, wake bool) bool {
	var b [api.WaitSize]byte
	if d < 0 {
		d = 0
	}
	binary.BigEndian.PutUint64(b[:], uint64(d))
	if wake {
		binary.BigEndian.PutUint32(b[8:], api.WaitRequest)
	}
	n, err := o.do(api.OpWait, b[:])
	return err == nil && n == 1
}

// WaitRequest returns when a request may be waiting (or after a while; the
// caller polls Recv again). On the device the calling goroutine sleeps and
// the runtime's idle hook wakes it, so other goroutines keep running;
// elsewhere it waits in the OS.
func (o *OS) WaitRequest() {
	if o.park != nil {
		o.park(o)
		return
	}
	o.Wait(time.Second, true)
}

// Read fills p with random bytes from the OS (an io.Reader).
func (o *OS) Read(p []byte) (int, error) {
	for done := 0; done < len(p); {
		chunk := p[done:min(len(p), done+api.MaxRandom)]
		n, err := o.do(api.OpRandom, chunk)
		if err != nil {
			return done, fmt.Errorf("taruntime: random: %w", err)
		}
		if n != len(chunk) {
			return done, errors.New("taruntime: random: short answer")
		}
		done += n
	}
	return len(p), nil
}
