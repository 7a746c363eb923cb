package taruntime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/internal/storage"
)

// fakeOS records calls and serves sectors from memory.
type fakeOS struct {
	disk  []byte
	calls []int // sectors per sector call
}

func (f *fakeOS) call(op uint32, buf []byte) int32 {
	switch op {
	case api.OpReadSectors, api.OpWriteSectors:
		k, err := api.SectorCallLen(len(buf))
		if err != nil {
			return int32(api.EINVAL)
		}
		lba := binary.BigEndian.Uint64(buf)
		f.calls = append(f.calls, k)
		at := f.disk[lba*api.SectorSize : (lba+uint64(k))*api.SectorSize]
		if op == api.OpReadSectors {
			copy(buf[api.SectorHeader:], at)
		} else {
			copy(at, buf[api.SectorHeader:])
		}
		return int32(k)
	case api.OpFlush:
		return 0
	}
	return int32(api.ENOSYS)
}

func TestDeviceSplitsTransfers(t *testing.T) {
	f := &fakeOS{disk: make([]byte, 200*api.SectorSize)}
	d := NewOS(f.call).Device(200)
	var _ storage.Device = d
	data := bytes.Repeat([]byte("0123456789abcdef"), 100*api.SectorSize/16)
	if err := d.WriteSectors(50, data); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 2 || f.calls[0] != api.MaxSectors || f.calls[1] != 100-api.MaxSectors {
		t.Fatalf("calls %v", f.calls)
	}
	got := make([]byte, len(data))
	if err := d.ReadSectors(50, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	for _, c := range []struct {
		lba uint64
		n   int
	}{{200, api.SectorSize}, {199, 2 * api.SectorSize}, {0, 100}, {^uint64(0), api.SectorSize}} {
		if err := d.ReadSectors(c.lba, make([]byte, c.n)); !errors.Is(err, storage.ErrRange) {
			t.Errorf("read %d bytes at %d: %v", c.n, c.lba, err)
		}
	}
}

func TestCallErrorsSurface(t *testing.T) {
	o := NewOS(func(uint32, []byte) int32 { return int32(api.EIO) })
	if err := o.Device(10).WriteSectors(0, make([]byte, api.SectorSize)); !errors.Is(err, api.EIO) {
		t.Fatalf("write: %v", err)
	}
	if _, err := o.Read(make([]byte, 10)); !errors.Is(err, api.EIO) {
		t.Fatalf("random: %v", err)
	}
	if _, err := o.Config(); !errors.Is(err, api.EIO) {
		t.Fatalf("config: %v", err)
	}
	if _, _, err := o.Recv(make([]byte, 10)); err == nil {
		t.Fatal("small receive buffer accepted")
	}
	if err := o.Send(1, make([]byte, api.MaxMessage)); err == nil {
		t.Fatal("oversized reply accepted")
	}
}

// The anchor client carries the block and the counter, and turns the OS's
// ETAMPERED into an error the store and the applet recognise as tampering.
func TestAnchorThroughTheOS(t *testing.T) {
	var block [api.AnchorBlockSize]byte
	counter := uint32(7)
	tamper := false
	o := NewOS(func(op uint32, buf []byte) int32 {
		if len(buf) != api.AnchorCallSize {
			return int32(api.EINVAL)
		}
		if tamper {
			return int32(api.ETAMPERED)
		}
		switch op {
		case api.OpAnchorRead:
			binary.BigEndian.PutUint32(buf, counter)
			copy(buf[4:], block[:])
		case api.OpAnchorWrite:
			copy(block[:], buf[4:])
			counter++
			binary.BigEndian.PutUint32(buf, counter)
		default:
			return int32(api.ENOSYS)
		}
		return 0
	})
	a := o.Anchor()
	var _ storage.Anchor = a
	data := [storage.AnchorSize]byte{1, 2, 3}
	if c, err := a.Write(data); err != nil || c != 8 || a.WriteCounter() != 8 {
		t.Fatalf("write: %d %v", c, err)
	}
	if got, c, err := a.Read(); err != nil || got != data || c != 8 {
		t.Fatalf("read: %d %v", c, err)
	}
	tamper = true
	_, _, err := a.Read()
	var tm interface{ Tampered() bool }
	if !errors.Is(err, storage.ErrTampered) || !errors.Is(err, api.ETAMPERED) || !errors.As(err, &tm) || !tm.Tampered() {
		t.Fatalf("tampered read: %v", err)
	}
	if _, err := o.Anchor().Write(data); !errors.As(err, &tm) {
		t.Fatalf("tampered write: %v", err)
	}
	e := NewOS(func(uint32, []byte) int32 { return int32(api.EIO) })
	if _, _, err := e.Anchor().Read(); !errors.Is(err, api.EIO) || errors.Is(err, storage.ErrTampered) {
		t.Fatalf("I/O error: %v", err)
	}
}
