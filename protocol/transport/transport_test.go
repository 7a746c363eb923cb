package transport

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestParseUSBID(t *testing.T) {
	id, err := ParseUSBID("1209:ABCD")
	if err != nil || id != (USBID{0x1209, 0xabcd}) || id.String() != "1209:abcd" {
		t.Fatalf("ParseUSBID: %v %v", id, err)
	}
	for _, bad := range []string{"1209", "12345:1", "x:y"} {
		if _, err := ParseUSBID(bad); err == nil {
			t.Errorf("ParseUSBID(%q) accepted", bad)
		}
	}
}

func TestListenRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"tcp:0.0.0.0:0", "tcp:192.0.2.1:7", "udp:x", "nonsense"} {
		if ln, err := Listen(addr); err == nil {
			ln.Close()
			t.Errorf("listen %s accepted", addr)
		}
	}
	ln, err := Listen("tcp:127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// A unix address given to a tool reaches what Listen serves there.
func TestParseDialerReachesListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	ln, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	dial, err := ParseDialer("unix:"+sock, DefaultUSBID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	for _, bad := range []string{"", "unix:", "tcp:127.0.0.1:1", "serial", "soft:/x"} {
		if _, err := ParseDialer(bad, DefaultUSBID); err == nil {
			t.Errorf("ParseDialer(%q) accepted", bad)
		}
	}
}

// A write to a peer that never reads fails at the deadline instead of
// blocking for ever.
func TestWithWriteDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := WithWriteDeadline(a, 10*time.Millisecond)
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write to a peer that never reads succeeded")
	}
	var plain io.ReadWriteCloser = struct {
		io.Reader
		io.Writer
		io.Closer
	}{a, a, a}
	if WithWriteDeadline(plain, time.Second) != plain {
		t.Fatal("a stream without deadlines was wrapped")
	}
}
