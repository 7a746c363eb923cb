package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// SectorSize is the unit of every device transfer: eMMC, SD and the files
// that stand in for them all read and write whole 512-byte sectors.
const SectorSize = 512

// Device is a block device of fixed size, addressed in whole sectors.
//
// Writes may be cached by the device and reach stable storage in any order
// until Flush returns; a write interrupted by a power cut may leave any
// prefix of its sectors written (a sector itself is written entirely or not
// at all). The store never relies on more than that.
//
// On hardware the Trusted OS plugs its eMMC driver in behind this interface
// (for tamago's usdhc, ReadBlocks/WriteBlocks and a cache flush).
type Device interface {
	// ReadSectors fills p, whose length is a multiple of SectorSize, from
	// the sectors starting at lba.
	ReadSectors(lba uint64, p []byte) error
	// WriteSectors writes p, whose length is a multiple of SectorSize, to
	// the sectors starting at lba.
	WriteSectors(lba uint64, p []byte) error
	// Flush returns once every write that returned before the call is on
	// stable storage.
	Flush() error
	// Sectors is the size of the device in sectors.
	Sectors() uint64
}

// ErrDeviceRange reports a transfer outside the device or of a length that is
// not a whole number of sectors.
var ErrDeviceRange = errors.New("store: transfer out of device range or not sector aligned")

// checkRange validates a transfer of len(p) bytes at lba on a device of the
// given size without overflowing on 32-bit platforms.
func checkRange(lba uint64, n int, sectors uint64) error {
	if n%SectorSize != 0 {
		return ErrDeviceRange
	}
	count := uint64(n / SectorSize)
	if lba > sectors || count > sectors-lba {
		return ErrDeviceRange
	}
	return nil
}

// MemDevice is a device held in memory. It has no write cache: Flush does
// nothing. It is meant for tests and for a vault that does not persist.
type MemDevice struct {
	mu      sync.RWMutex
	sectors uint64
	data    map[uint64]*[SectorSize]byte // sparse: absent sectors read as zeros

	writes, bytes uint64
}

// NewMemDevice returns a zero-filled memory device of the given size.
func NewMemDevice(sectors uint64) *MemDevice {
	return &MemDevice{sectors: sectors, data: make(map[uint64]*[SectorSize]byte)}
}

func (d *MemDevice) Sectors() uint64 { return d.sectors }

func (d *MemDevice) ReadSectors(lba uint64, p []byte) error {
	if err := checkRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	for i := 0; i < len(p); i += SectorSize {
		s := d.data[lba+uint64(i/SectorSize)]
		if s == nil {
			clear(p[i : i+SectorSize])
		} else {
			copy(p[i:i+SectorSize], s[:])
		}
	}
	return nil
}

func (d *MemDevice) WriteSectors(lba uint64, p []byte) error {
	if err := checkRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; i < len(p); i += SectorSize {
		s := new([SectorSize]byte)
		copy(s[:], p[i:i+SectorSize])
		d.data[lba+uint64(i/SectorSize)] = s
	}
	d.writes++
	d.bytes += uint64(len(p))
	return nil
}

func (d *MemDevice) Flush() error { return nil }

// FileDevice is a device backed by a host file: the software vault's store.
// Flush is fsync. The host controls the file (see the package documentation
// for what that means for rollback).
type FileDevice struct {
	f       *os.File
	sectors uint64
}

// OpenFileDevice opens the image file at path, creating it if it does not
// exist, and grows it (sparsely) to at least sectors sectors. With sectors 0
// an existing file is opened at its current size. A trailing partial sector
// is ignored.
func OpenFileDevice(path string, sectors uint64) (*FileDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := uint64(st.Size())
	if want := sectors * SectorSize; sectors != 0 && size < want {
		if sectors > (1<<62)/SectorSize {
			f.Close()
			return nil, fmt.Errorf("store: device size %d sectors too large", sectors)
		}
		if err := f.Truncate(int64(want)); err != nil {
			f.Close()
			return nil, err
		}
		size = want
	}
	return &FileDevice{f: f, sectors: size / SectorSize}, nil
}

func (d *FileDevice) Sectors() uint64 { return d.sectors }

func (d *FileDevice) ReadSectors(lba uint64, p []byte) error {
	if err := checkRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	_, err := d.f.ReadAt(p, int64(lba*SectorSize))
	return err
}

func (d *FileDevice) WriteSectors(lba uint64, p []byte) error {
	if err := checkRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	_, err := d.f.WriteAt(p, int64(lba*SectorSize))
	return err
}

func (d *FileDevice) Flush() error { return d.f.Sync() }

// Close closes the file.
func (d *FileDevice) Close() error { return d.f.Close() }

// WithFlushLatency returns dev with every Flush delayed by lat, to model the
// cost of a cache flush on eMMC in benchmarks (an fsync on the build host is
// far faster than flash).
func WithFlushLatency(dev Device, lat time.Duration) Device {
	return &slowFlush{Device: dev, lat: lat}
}

type slowFlush struct {
	Device
	lat time.Duration
}

func (d *slowFlush) Flush() error {
	time.Sleep(d.lat)
	return d.Device.Flush()
}
