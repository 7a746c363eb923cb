package storetest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

func sectorsOf(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n*storage.SectorSize) }

func TestDevicesReadWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	fd, err := emulate.OpenFileDevice(path, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	for name, d := range map[string]storage.Device{"mem": NewMemDevice(64), "file": fd, "crash": NewCrashDevice(64)} {
		if d.Sectors() != 64 {
			t.Fatalf("%s: %d sectors", name, d.Sectors())
		}
		if err := d.WriteSectors(10, sectorsOf(7, 3)); err != nil {
			t.Fatal(name, err)
		}
		got := make([]byte, 5*storage.SectorSize)
		if err := d.ReadSectors(9, got); err != nil {
			t.Fatal(name, err)
		}
		want := append(append(sectorsOf(0, 1), sectorsOf(7, 3)...), sectorsOf(0, 1)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read back wrong", name)
		}
		for _, bad := range []struct {
			lba uint64
			n   int
		}{{63, 2 * storage.SectorSize}, {64, storage.SectorSize}, {0, 100}, {1 << 63, storage.SectorSize}, {^uint64(0), storage.SectorSize}} {
			if err := d.WriteSectors(bad.lba, make([]byte, bad.n)); !errors.Is(err, storage.ErrRange) {
				t.Fatalf("%s: write %d+%d: %v", name, bad.lba, bad.n, err)
			}
			if err := d.ReadSectors(bad.lba, make([]byte, bad.n)); !errors.Is(err, storage.ErrRange) {
				t.Fatalf("%s: read %d+%d: %v", name, bad.lba, bad.n, err)
			}
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// A reopened file device keeps its size and content.
	fd.Close()
	fd2, err := emulate.OpenFileDevice(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd2.Close()
	got := make([]byte, storage.SectorSize)
	fd2.ReadSectors(11, got)
	if fd2.Sectors() != 64 || got[0] != 7 {
		t.Fatalf("reopened file device: %d sectors, %d", fd2.Sectors(), got[0])
	}
}

func TestCrashDeviceSemantics(t *testing.T) {
	d := NewCrashDevice(32)
	d.WriteSectors(0, sectorsOf(1, 2))
	d.Flush()
	d.WriteSectors(0, sectorsOf(2, 1)) // pending 0
	d.WriteSectors(4, sectorsOf(3, 4)) // pending 1
	d.FailAfter(0)
	if err := d.WriteSectors(8, sectorsOf(4, 4)); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("write at the cut: %v", err)
	}
	if err := d.ReadSectors(0, make([]byte, storage.SectorSize)); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("read after the cut: %v", err)
	}
	p := d.Pending()
	if len(p) != 3 || !p[2].InFlight || p[1].InFlight {
		t.Fatalf("pending: %+v", p)
	}
	read := func(d *CrashDevice, lba uint64) byte {
		b := make([]byte, storage.SectorSize)
		if err := d.ReadSectors(lba, b); err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	// Keep nothing: the flushed state.
	c := d.Clone()
	c.CrashKeep(nil)
	if read(c, 0) != 1 || read(c, 1) != 1 || read(c, 4) != 0 || read(c, 8) != 0 {
		t.Fatal("keep nothing: not the flushed state")
	}
	// Keep the second write torn after 2 sectors and the in-flight one
	// after 1, lose the first.
	c = d.Clone()
	c.CrashKeep([]int{0, 2, 1})
	if read(c, 0) != 1 || read(c, 4) != 3 || read(c, 5) != 3 || read(c, 6) != 0 || read(c, 8) != 4 || read(c, 9) != 0 {
		t.Fatal("CrashKeep did not apply the chosen prefixes")
	}
	// The device is usable again and its writes are volatile until Flush.
	c.WriteSectors(20, sectorsOf(9, 1))
	c2 := c.Clone()
	c2.CrashKeep(nil)
	if read(c2, 20) != 0 {
		t.Fatal("unflushed write survived keep-nothing")
	}
	c.Flush()
	c.CrashKeep(nil)
	if read(c, 20) != 9 {
		t.Fatal("flushed write lost")
	}
	// Random crashes only ever produce sectors from the writes issued.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100; i++ {
		c := d.Clone()
		c.Crash(r)
		for lba := uint64(0); lba < 12; lba++ {
			v := read(c, lba)
			ok := v == 0 || (lba < 2 && (v == 1 || v == 2)) || (lba >= 4 && lba < 8 && v == 3) || (lba >= 8 && v == 4)
			if !ok {
				t.Fatalf("sector %d = %d after a random crash", lba, v)
			}
		}
	}
	// Flush latency is honoured.
	c.SetFlushLatency(5 * time.Millisecond)
	t0 := time.Now()
	c.Flush()
	if time.Since(t0) < 5*time.Millisecond {
		t.Fatal("flush latency not applied")
	}
}
