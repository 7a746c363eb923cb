//go:build tamago && board_qemu && arm

package qemu

import (
	"runtime"
	"time"

	"github.com/usbarmory/tamago/soc/nxp/uart"
)

// uartLink is the protocol transport on a UART without interrupts. QEMU's
// i.MX UART holds one received character at a time and feeds the next only
// after the guest read it, so a reader that slept after every empty poll
// would get about one byte per sleep: once bytes flow, Read keeps polling
// (yielding to other goroutines) until the line has been quiet for linger.
type uartLink struct {
	u *uart.UART
}

const (
	linger = 2 * time.Millisecond
	idle   = 500 * time.Microsecond
)

func newUARTLink(u *uart.UART) *uartLink { return &uartLink{u: u} }

func (l *uartLink) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n := l.drain(p)
		if n == 0 {
			time.Sleep(idle)
			continue
		}
		quietSince := time.Now()
		for n < len(p) && time.Since(quietSince) < linger {
			if m := l.drain(p[n:]); m > 0 {
				n += m
				quietSince = time.Now()
				continue
			}
			runtime.Gosched()
		}
		return n, nil
	}
}

func (l *uartLink) drain(p []byte) int {
	n := 0
	for n < len(p) {
		c, ok := l.u.Rx()
		if !ok {
			break
		}
		p[n] = c
		n++
	}
	return n
}

// Write sends p. (tamago's UART.Write reports len(p)-1, so the count is
// computed here.)
func (l *uartLink) Write(p []byte) (int, error) {
	for _, c := range p {
		l.u.Tx(c)
	}
	return len(p), nil
}
