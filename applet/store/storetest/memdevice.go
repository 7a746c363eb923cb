package storetest

import (
	"maps"
	"sync"

	"github.com/cofferhsm/coffer/internal/storage"
)

// MemDevice is a device held in memory. It has no write cache: Flush does
// nothing.
type MemDevice struct {
	mu      sync.RWMutex
	sectors uint64
	data    map[uint64]*[storage.SectorSize]byte // sparse: absent sectors read as zeros
}

var _ storage.Device = (*MemDevice)(nil)

// NewMemDevice returns a zero-filled memory device of the given size.
func NewMemDevice(sectors uint64) *MemDevice {
	return &MemDevice{sectors: sectors, data: make(map[uint64]*[storage.SectorSize]byte)}
}

func (d *MemDevice) Sectors() uint64 { return d.sectors }

func (d *MemDevice) ReadSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	for i := 0; i < len(p); i += storage.SectorSize {
		s := d.data[lba+uint64(i/storage.SectorSize)]
		if s == nil {
			clear(p[i : i+storage.SectorSize])
		} else {
			copy(p[i:i+storage.SectorSize], s[:])
		}
	}
	return nil
}

func (d *MemDevice) WriteSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; i < len(p); i += storage.SectorSize {
		s := new([storage.SectorSize]byte)
		copy(s[:], p[i:i+storage.SectorSize])
		d.data[lba+uint64(i/storage.SectorSize)] = s
	}
	return nil
}

func (d *MemDevice) Flush() error { return nil }

// MemSnapshot is the content of a MemDevice at one instant.
type MemSnapshot struct {
	data map[uint64]*[storage.SectorSize]byte
}

// Snapshot returns the device's content, for Restore: an old copy of the
// whole device, as whoever holds the medium can keep.
func (d *MemDevice) Snapshot() MemSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Sector buffers are never modified in place, so they can be shared.
	return MemSnapshot{maps.Clone(d.data)}
}

// Restore puts back the content of a snapshot of this device.
func (d *MemDevice) Restore(s MemSnapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.data = maps.Clone(s.data)
}
