package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Dialer opens a byte stream to a vault speaking the framing protocol.
type Dialer func(ctx context.Context) (io.ReadWriteCloser, error)

// UnixDialer dials a unix socket: the software vault (`softvault serve
// -listen unix:PATH`) or QEMU's UART (`-serial unix:PATH,server`).
func UnixDialer(path string) Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// ParseDialer reads a vault address as tools take it: unix:PATH, or
// serial:PATH|auto (auto: the one USB serial port with id).
func ParseDialer(addr string, id USBID) (Dialer, error) {
	switch kind, where, _ := strings.Cut(addr, ":"); {
	case where == "":
	case kind == "unix":
		return UnixDialer(where), nil
	case kind == "serial":
		return SerialDialer(where, id), nil
	}
	return nil, fmt.Errorf("vault address: want unix:PATH or serial:PATH|auto, got %q", addr)
}

// WithWriteDeadline bounds every write on conn by timeout when conn has
// write deadlines (sockets), so that a vault that stopped reading cannot
// hold a request (and the stream's write lock) past its timeout: the write
// fails, that request fails, and the vault's frame reader skips the partial
// frame. Other streams are returned as they are.
func WithWriteDeadline(conn io.ReadWriteCloser, timeout time.Duration) io.ReadWriteCloser {
	if dc, ok := conn.(deadliner); ok {
		return &writeDeadlineConn{ReadWriteCloser: conn, d: dc, timeout: timeout}
	}
	return conn
}

type deadliner interface{ SetWriteDeadline(time.Time) error }

type writeDeadlineConn struct {
	io.ReadWriteCloser
	d       deadliner
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	c.d.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.ReadWriteCloser.Write(p)
}
