package emulate

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// MemFile is a host file kept in memory: a File for a FileDevice or a fake
// fuse, and an RPMBBacking for OpenRPMBEmulator. It has no Sync, like the
// QEMU board's semihosting file, so the emulators on it behave as they do
// on that board. It belongs with the emulators rather than with the tests'
// devices (applet/store/storetest) because this package's own tests need it
// too, and storetest imports this package. Bytes and SetBytes let a test
// copy the file away and put an old copy back, as a host can.
//
// The zero value is an empty file. It is safe for concurrent use.
type MemFile struct {
	mu sync.Mutex
	b  []byte
}

var _ File = (*MemFile)(nil)

var errNegativeOffset = errors.New("emulate: negative file offset")

// NewMemFile returns a file holding a copy of b.
func NewMemFile(b []byte) *MemFile { return &MemFile{b: bytes.Clone(b)} }

// ReadAt reads from the file; it returns io.EOF where p reaches past the end.
func (f *MemFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegativeOffset
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes to the file, growing it with zeros as needed.
func (f *MemFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegativeOffset
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.b)) {
		f.b = append(f.b, make([]byte, end-int64(len(f.b)))...)
	}
	return copy(f.b[off:], p), nil
}

// Size is the file's length in bytes.
func (f *MemFile) Size() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.b)), nil
}

// Bytes returns a copy of the file's content.
func (f *MemFile) Bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.b)
}

// SetBytes replaces the file's content with a copy of b.
func (f *MemFile) SetBytes(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.b = bytes.Clone(b)
}
