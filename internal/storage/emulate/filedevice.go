package emulate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cofferhsm/coffer/internal/storage"
)

// File is a host file as an emulated device reaches it: an *os.File (see
// OSFile) for the software vault and tests, a semihosting file on the QEMU
// board.
type File interface {
	io.ReaderAt
	io.WriterAt
	// Size is the file's length in bytes.
	Size() (int64, error)
}

// OSFile is a File on an *os.File.
type OSFile struct{ *os.File }

// Size is the file's length in bytes.
func (f OSFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// FileDevice is a storage.Device on a host file: the software vault's store,
// and the QEMU board's. Flush syncs the file if it can (an *os.File: fsync);
// semihosting has none, so there data reaches the host's page cache when a
// write returns and only a host power cut loses it. The host controls the
// file: it can restore an old copy at will, which the store's anchor detects
// unless the anchor is restored with it (see applet/store FORMAT.md).
type FileDevice struct {
	f       File
	sectors uint64
}

var _ storage.Device = (*FileDevice)(nil)

// NewFileDevice returns a device on f, growing f (sparsely, by writing its
// last sector) to at least sectors sectors. With sectors 0 the device has
// f's current size. A trailing partial sector is ignored.
func NewFileDevice(f File, sectors uint64) (*FileDevice, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, errors.New("emulate: negative file size")
	}
	have := uint64(size) / storage.SectorSize
	if have < sectors {
		if sectors > (1<<62)/storage.SectorSize {
			return nil, fmt.Errorf("emulate: device size %d sectors too large", sectors)
		}
		var zero [storage.SectorSize]byte
		if _, err := f.WriteAt(zero[:], int64(sectors-1)*storage.SectorSize); err != nil {
			return nil, err
		}
		have = sectors
	}
	return &FileDevice{f: f, sectors: have}, nil
}

// OpenFileDevice opens the image file at path, creating it if it does not
// exist, as NewFileDevice does. Close closes the file.
func OpenFileDevice(path string, sectors uint64) (*FileDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	d, err := NewFileDevice(OSFile{f}, sectors)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

func (d *FileDevice) Sectors() uint64 { return d.sectors }

func (d *FileDevice) ReadSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	_, err := d.f.ReadAt(p, int64(lba*storage.SectorSize))
	return err
}

func (d *FileDevice) WriteSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	_, err := d.f.WriteAt(p, int64(lba*storage.SectorSize))
	return err
}

// Flush syncs the file if it has a Sync method (an *os.File); otherwise the
// writes themselves are all there is.
func (d *FileDevice) Flush() error {
	if s, ok := d.f.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// Close closes the file if it can be closed.
func (d *FileDevice) Close() error {
	if c, ok := d.f.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// WithFlushLatency returns dev with every Flush delayed by lat, to model the
// cost of a cache flush on eMMC (an fsync on the build host is far faster
// than flash). It is a knob of the software vault (softvault's
// FlushLatency, used by benchmarks and the soak test), so it lives here
// with the emulated devices rather than in test support.
func WithFlushLatency(dev storage.Device, lat time.Duration) storage.Device {
	return &slowFlush{Device: dev, lat: lat}
}

type slowFlush struct {
	storage.Device
	lat time.Duration
}

func (d *slowFlush) Flush() error {
	time.Sleep(d.lat)
	return d.Device.Flush()
}
