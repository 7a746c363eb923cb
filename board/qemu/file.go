package qemu

import (
	"errors"
	"io"

	"github.com/cofferhsm/coffer/applet/store"
)

// File is a host file as the board reaches it (through semihosting on the
// device, an *os.File in tests).
type File interface {
	io.ReaderAt
	io.WriterAt
	// Size is the file's length in bytes.
	Size() (int64, error)
}

// FileDevice is a store.Device on a host file. Flush does nothing more than
// the writes themselves: semihosting has no fsync, so data reaches the host's
// page cache when a write returns. Killing QEMU loses nothing that was
// written; a host power cut may.
type FileDevice struct {
	f       File
	sectors uint64
}

var _ store.Device = (*FileDevice)(nil)

// NewFileDevice returns a device on f, growing it (by writing its last
// sector) to at least sectors sectors. A trailing partial sector is ignored.
func NewFileDevice(f File, sectors uint64) (*FileDevice, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, errors.New("qemu: negative file size")
	}
	have := uint64(size) / store.SectorSize
	if have < sectors {
		// Extend with one zero sector at the end; the host file is sparse.
		var zero [store.SectorSize]byte
		if _, err := f.WriteAt(zero[:], int64(sectors-1)*store.SectorSize); err != nil {
			return nil, err
		}
		have = sectors
	}
	return &FileDevice{f: f, sectors: have}, nil
}

func (d *FileDevice) Sectors() uint64 { return d.sectors }

func (d *FileDevice) check(lba uint64, n int) error {
	if n%store.SectorSize != 0 || lba > d.sectors || uint64(n/store.SectorSize) > d.sectors-lba {
		return store.ErrDeviceRange
	}
	return nil
}

func (d *FileDevice) ReadSectors(lba uint64, p []byte) error {
	if err := d.check(lba, len(p)); err != nil {
		return err
	}
	_, err := d.f.ReadAt(p, int64(lba)*store.SectorSize)
	return err
}

func (d *FileDevice) WriteSectors(lba uint64, p []byte) error {
	if err := d.check(lba, len(p)); err != nil {
		return err
	}
	_, err := d.f.WriteAt(p, int64(lba)*store.SectorSize)
	return err
}

func (d *FileDevice) Flush() error { return nil }
