package taruntime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/internal/storage"
)

// Device is the record store's block device, on the OS's storage.
type Device struct {
	os      *OS
	sectors uint64
}

var _ storage.Device = (*Device)(nil)

// Device returns the OS's block device of the given size (from Config).
func (o *OS) Device(sectors uint64) *Device { return &Device{os: o, sectors: sectors} }

func (d *Device) Sectors() uint64 { return d.sectors }

// ReadSectors reads in calls of at most api.MaxSectors sectors.
func (d *Device) ReadSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	return d.transfer(api.OpReadSectors, lba, p)
}

// WriteSectors writes in calls of at most api.MaxSectors sectors. A write
// cut short leaves a prefix written, as the store expects of any device.
func (d *Device) WriteSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	return d.transfer(api.OpWriteSectors, lba, p)
}

func (d *Device) transfer(op uint32, lba uint64, p []byte) error {
	for len(p) > 0 {
		k := min(len(p)/api.SectorSize, api.MaxSectors)
		b := make([]byte, api.SectorHeader+k*api.SectorSize)
		binary.BigEndian.PutUint64(b, lba)
		if op == api.OpWriteSectors {
			copy(b[api.SectorHeader:], p[:k*api.SectorSize])
		}
		n, err := d.os.do(op, b)
		if err != nil {
			return fmt.Errorf("taruntime: %s %d sectors at %d: %w", api.OpName(op), k, lba, err)
		}
		if n != k {
			return fmt.Errorf("taruntime: %s: %d of %d sectors", api.OpName(op), n, k)
		}
		if op == api.OpReadSectors {
			copy(p, b[api.SectorHeader:])
		}
		clear(b)
		p = p[k*api.SectorSize:]
		lba += uint64(k)
	}
	return nil
}

// Flush waits until earlier writes are on stable storage.
func (d *Device) Flush() error {
	_, err := d.os.do(api.OpFlush, nil)
	return err
}

// Anchor is the record store's anchor, kept by the OS in its RPMB partition
// (OpAnchorRead, OpAnchorWrite). The OS authenticates every access with a
// key the applet never holds.
type Anchor struct {
	os      *OS
	counter atomic.Uint32
}

var _ storage.Anchor = (*Anchor)(nil)

// Anchor returns the OS's anchor.
func (o *OS) Anchor() *Anchor { return &Anchor{os: o} }

// Read returns the anchored block and the write counter.
func (a *Anchor) Read() (data [storage.AnchorSize]byte, counter uint32, err error) {
	var b [api.AnchorCallSize]byte
	defer clear(b[:])
	if _, err := a.os.do(api.OpAnchorRead, b[:]); err != nil {
		return data, 0, anchorError("read", err)
	}
	copy(data[:], b[4:])
	counter = binary.BigEndian.Uint32(b[:])
	a.counter.Store(counter)
	return data, counter, nil
}

// Write replaces the anchored block and returns the new write counter.
func (a *Anchor) Write(data [storage.AnchorSize]byte) (uint32, error) {
	var b [api.AnchorCallSize]byte
	defer clear(b[:])
	copy(b[4:], data[:])
	if _, err := a.os.do(api.OpAnchorWrite, b[:]); err != nil {
		return 0, anchorError("write", err)
	}
	c := binary.BigEndian.Uint32(b[:])
	a.counter.Store(c)
	return c, nil
}

// WriteCounter is the last write counter the OS reported (metrics).
func (a *Anchor) WriteCounter() uint32 { return a.counter.Load() }

// TamperedError is the OS's verdict that the RPMB partition failed its
// checks (api.ETAMPERED). It wraps storage.ErrTampered and answers Tampered(),
// as the store's own integrity errors do.
type TamperedError struct{ Op string }

func (e *TamperedError) Error() string {
	return "taruntime: anchor " + e.Op + ": " + api.ETAMPERED.Error()
}
func (e *TamperedError) Unwrap() []error { return []error{api.ETAMPERED, storage.ErrTampered} }
func (e *TamperedError) Tampered() bool  { return true }

func anchorError(op string, err error) error {
	if errors.Is(err, api.ETAMPERED) {
		return &TamperedError{Op: op}
	}
	return fmt.Errorf("taruntime: anchor %s: %w", op, err)
}
