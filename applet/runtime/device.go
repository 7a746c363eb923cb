package taruntime

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/firmware/api"
)

// Device is the record store's block device, on the OS's storage.
type Device struct {
	os      *OS
	sectors uint64
}

var _ store.Device = (*Device)(nil)

// Device returns the OS's block device of the given size (from Config).
func (o *OS) Device(sectors uint64) *Device { return &Device{os: o, sectors: sectors} }

func (d *Device) Sectors() uint64 { return d.sectors }

func (d *Device) check(lba uint64, n int) error {
	if n%api.SectorSize != 0 || lba > d.sectors || uint64(n/api.SectorSize) > d.sectors-lba {
		return store.ErrDeviceRange
	}
	return nil
}

// ReadSectors reads in calls of at most api.MaxSectors sectors.
func (d *Device) ReadSectors(lba uint64, p []byte) error {
	if err := d.check(lba, len(p)); err != nil {
		return err
	}
	return d.transfer(api.OpReadSectors, lba, p)
}

// WriteSectors writes in calls of at most api.MaxSectors sectors. A write
// cut short leaves a prefix written, as the store expects of any device.
func (d *Device) WriteSectors(lba uint64, p []byte) error {
	if err := d.check(lba, len(p)); err != nil {
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

// RPMB carries RPMB frames to the OS's RPMB partition (the anchor's).
type RPMB struct{ os *OS }

var _ store.RPMBTransport = RPMB{}

// RPMB returns the OS's RPMB transport.
func (o *OS) RPMB() RPMB { return RPMB{os: o} }

func (r RPMB) WriteRPMB(frame []byte, reliable bool) error {
	if len(frame) != api.RPMBFrameSize {
		return errors.New("taruntime: rpmb frame must be 512 bytes")
	}
	b := make([]byte, api.RPMBHeader+api.RPMBFrameSize)
	if reliable {
		binary.BigEndian.PutUint32(b, 1)
	}
	copy(b[api.RPMBHeader:], frame)
	_, err := r.os.do(api.OpRPMBWrite, b)
	return err
}

func (r RPMB) ReadRPMB(frame []byte) error {
	if len(frame) != api.RPMBFrameSize {
		return errors.New("taruntime: rpmb frame must be 512 bytes")
	}
	_, err := r.os.do(api.OpRPMBRead, frame)
	return err
}
