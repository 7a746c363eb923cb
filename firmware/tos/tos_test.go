package tos

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/protocol"
)

func TestRelayTagsAndStop(t *testing.T) {
	r := NewRelay()
	ctx := context.Background()
	got := make(chan []byte, 2)
	go func() { got <- r.Handle(ctx, []byte("one")) }()
	go func() { got <- r.Handle(ctx, []byte("two")) }()
	if !r.Wait(5 * time.Second) {
		t.Fatal("no request arrived")
	}
	for r.Queued() < 2 {
		time.Sleep(time.Millisecond)
	}
	t1, q1, ok1 := r.Next()
	t2, _, ok2 := r.Next()
	if !ok1 || !ok2 || t1 == t2 {
		t.Fatalf("tags %d %d", t1, t2)
	}
	if _, _, ok := r.Next(); ok {
		t.Fatal("a third request")
	}
	if r.Reply(t1+t2+100, []byte("forged")) {
		t.Fatal("reply under an unknown tag accepted")
	}
	if !r.Reply(t1, append([]byte("re:"), q1...)) {
		t.Fatal("reply refused")
	}
	if r.Reply(t1, []byte("again")) {
		t.Fatal("second reply to one tag accepted")
	}
	first := <-got
	if !bytes.HasPrefix(first, []byte("re:")) {
		t.Fatalf("reply %q", first)
	}
	r.AppletStopped()
	err := protocol.Decode(<-got, protocol.TypeIdentity, &protocol.Empty{})
	if !bytes.Contains([]byte(err.Error()), []byte("restarted")) {
		t.Fatalf("after stop: %v", err)
	}
}

func TestRelayTimeout(t *testing.T) {
	r := NewRelay()
	r.Timeout = 20 * time.Millisecond
	reply := r.Handle(context.Background(), []byte("x"))
	if err := protocol.Decode(reply, protocol.TypeStatus, &protocol.Empty{}); err == nil {
		t.Fatal("no error")
	}
	if r.Queued() != 0 {
		t.Fatal("timed-out request left queued")
	}
}

// A request the applet took and did not answer in time may have been acted
// on (a login start counted): the timeout must say so with its own code, not
// call it busy, which promises that nothing was counted. A request the
// applet never took is withdrawn, and busy is then the truth.
func TestRelayTimeoutAfterTheAppletTookARequestIsOutcomeUnknown(t *testing.T) {
	r := NewRelay()
	r.Timeout = 20 * time.Millisecond
	req, _ := protocol.Encode(protocol.TypeLoginStart, &protocol.LoginStart{UserID: []byte("u"), KE1: make([]byte, protocol.KE1Size)})
	got := make(chan []byte, 1)
	go func() { got <- r.Handle(context.Background(), req) }()
	if !r.Wait(5 * time.Second) {
		t.Fatal("no request arrived")
	}
	tag, _, ok := r.Next() // the applet takes it, counts, and hangs
	if !ok {
		t.Fatal("nothing to take")
	}
	err := protocol.Decode(<-got, protocol.TypeLoginStart, &protocol.LoginStartReply{})
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) {
		t.Fatalf("timeout of a request the applet took: %v", err)
	}
	if r.Reply(tag, []byte("late")) {
		t.Fatal("a late reply was delivered to nobody")
	}

	// Never taken: withdrawn, nothing happened.
	err = protocol.Decode(r.Handle(context.Background(), req), protocol.TypeLoginStart, &protocol.LoginStartReply{})
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeBusy}) || r.Queued() != 0 {
		t.Fatalf("timeout of a request the applet never took: %v (queued %d)", err, r.Queued())
	}
}

// A restart of the applet loses the replies of the requests it had taken:
// their outcome is unknown too.
func TestRelayAppletStoppedIsOutcomeUnknown(t *testing.T) {
	r := NewRelay()
	got := make(chan []byte, 1)
	go func() { got <- r.Handle(context.Background(), []byte("x")) }()
	if !r.Wait(5 * time.Second) {
		t.Fatal("no request arrived")
	}
	r.Next()
	r.AppletStopped()
	if err := protocol.Decode(<-got, protocol.TypeLoginStart, &protocol.LoginStartReply{}); !errors.Is(err, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) {
		t.Fatalf("request taken by an applet that stopped: %v", err)
	}
}

func newService() (*Service, *storetest.MemDevice) {
	dev := storetest.NewMemDevice(128)
	anchor, err := OpenAnchor(RPMBSetup{Transport: storetest.NewMemRPMB(1), Key: [32]byte{1}, Fuse: &memFuse{}, InsecureEmulator: true})
	if err != nil {
		panic(err)
	}
	return &Service{Device: dev, Anchor: anchor, Relay: NewRelay(), Rand: bytes.NewReader(make([]byte, 1<<20))}, dev
}

func call(s *Service, op uint32, b []byte) int32 {
	r, _ := s.Call(op, SliceBuffer(b))
	return r
}

func TestServiceBoundsEveryCall(t *testing.T) {
	s, dev := newService()
	s.Start()
	sec := func(lba uint64, k int) []byte {
		b := make([]byte, api.SectorHeader+k*api.SectorSize)
		binary.BigEndian.PutUint64(b, lba)
		return b
	}
	for name, c := range map[string]struct {
		op   uint32
		buf  []byte
		want api.Errno
	}{
		"config short":      {api.OpConfig, make([]byte, api.ConfigSize-1), api.EINVAL},
		"recv small":        {api.OpRecv, make([]byte, 100), api.EINVAL},
		"send short":        {api.OpSend, make([]byte, 3), api.EINVAL},
		"send unknown tag":  {api.OpSend, make([]byte, 10), api.EINVAL},
		"wait size":         {api.OpWait, make([]byte, 8), api.EINVAL},
		"read partial":      {api.OpReadSectors, make([]byte, 100), api.EINVAL},
		"read past end":     {api.OpReadSectors, sec(128, 1), api.ERANGE},
		"read wraps":        {api.OpReadSectors, sec(^uint64(0), 1), api.ERANGE},
		"write too many":    {api.OpWriteSectors, sec(0, api.MaxSectors+1), api.EINVAL},
		"flush with data":   {api.OpFlush, make([]byte, 1), api.EINVAL},
		"anchor read short": {api.OpAnchorRead, make([]byte, api.AnchorBlockSize), api.EINVAL},
		"anchor write long": {api.OpAnchorWrite, make([]byte, api.AnchorCallSize+1), api.EINVAL},
		"random none":       {api.OpRandom, nil, api.EINVAL},
		"random too much":   {api.OpRandom, make([]byte, api.MaxRandom+1), api.EINVAL},
		"log too long":      {api.OpLog, make([]byte, api.MaxLog+1), api.EINVAL},
		"exit size":         {api.OpExit, make([]byte, 3), api.EINVAL},
		"unknown operation": {0x1ff, nil, api.ENOSYS},
		"huge buffer":       {api.OpLog, make([]byte, api.MaxBuffer+1), api.EINVAL},
	} {
		if got := call(s, c.op, c.buf); got != int32(c.want) {
			t.Errorf("%s: r0 = %d, want %d", name, got, c.want)
		}
	}
	// The sector range check uses the device size.
	if got := call(s, api.OpWriteSectors, sec(127, 1)); got != 1 {
		t.Fatalf("last sector write: %d", got)
	}
	if dev.Sectors() != 128 {
		t.Fatal("device size changed")
	}
}

func TestServiceConfigOncePerStart(t *testing.T) {
	s, _ := newService()
	s.Config.StoreKey[0] = 9
	s.Start()
	b := make([]byte, api.ConfigSize)
	if call(s, api.OpConfig, b) != 0 {
		t.Fatal("config refused")
	}
	c, err := api.DecodeConfig(b)
	if err != nil || c.Boot != 1 || c.StoreKey[0] != 9 {
		t.Fatalf("config %+v %v", c, err)
	}
	if call(s, api.OpConfig, b) != int32(api.EPERM) {
		t.Fatal("second config given")
	}
	s.Start()
	if call(s, api.OpConfig, b) != 0 {
		t.Fatal("config refused after restart")
	}
	if c, _ := api.DecodeConfig(b); c.Boot != 2 {
		t.Fatalf("boot %d", c.Boot)
	}
}

func TestServiceSectorsAndMessages(t *testing.T) {
	s, _ := newService()
	s.Start()
	w := make([]byte, api.SectorHeader+2*api.SectorSize)
	binary.BigEndian.PutUint64(w, 5)
	for i := range w[api.SectorHeader:] {
		w[api.SectorHeader+i] = byte(i)
	}
	if call(s, api.OpWriteSectors, w) != 2 {
		t.Fatal("write")
	}
	r := make([]byte, len(w))
	binary.BigEndian.PutUint64(r, 5)
	if call(s, api.OpReadSectors, r) != 2 || !bytes.Equal(r, w) {
		t.Fatal("read back differs")
	}

	done := make(chan []byte)
	go func() { done <- s.Relay.Handle(context.Background(), []byte("ping")) }()
	wait := make([]byte, api.WaitSize)
	binary.BigEndian.PutUint64(wait, uint64(5*time.Second))
	binary.BigEndian.PutUint32(wait[8:], api.WaitRequest)
	if call(s, api.OpWait, wait) != 1 {
		t.Fatal("wait did not see the request")
	}
	m := make([]byte, api.MaxMessage)
	n := call(s, api.OpRecv, m)
	if n != api.TagSize+4 || string(m[api.TagSize:n]) != "ping" {
		t.Fatalf("recv %d %q", n, m[:n])
	}
	reply := append(bytes.Clone(m[:api.TagSize]), "pong"...)
	if call(s, api.OpSend, reply) != 0 {
		t.Fatal("send")
	}
	if got := <-done; string(got) != "pong" {
		t.Fatalf("reply %q", got)
	}
	if call(s, api.OpRecv, m) != 0 {
		t.Fatal("a request out of nowhere")
	}
	binary.BigEndian.PutUint64(wait, uint64(time.Millisecond))
	if call(s, api.OpWait, wait) != 0 {
		t.Fatal("wait without a request returned 1")
	}
}

func TestSanitize(t *testing.T) {
	if got := sanitize("a\x1b[2Jb\x00\n"); got != "a?[2Jb?" {
		t.Fatalf("%q", got)
	}
}
