//go:build tamago && board_qemu && arm

package qemu

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"unsafe"
)

// defined in semihosting_arm.s
func semihost(op uint32, arg unsafe.Pointer) int32
func semihostExit(reason uint32)

// ARM semihosting operations.
const (
	sysOpen         = 0x01
	sysClose        = 0x02
	sysWrite        = 0x05
	sysRead         = 0x06
	sysSeek         = 0x0a
	sysFlen         = 0x0c
	sysErrno        = 0x13
	sysExitExtended = 0x20

	adpStoppedApplicationExit = 0x20026
)

// open modes (fopen strings "r", "rb", "r+", "r+b", "w", "wb", "w+", "w+b")
const (
	modeRB      = 1
	modeReadRW  = 3 // r+b
	modeCreate  = 7 // w+b
	maxFileSize = 1 << 31
)

// shFile is a host file reached through semihosting.
type shFile struct {
	mu   sync.Mutex
	h    uint32
	name string
}

func shOpen(name string, mode uint32) (*shFile, error) {
	path := append([]byte(name), 0)
	blk := &[3]uint32{uint32(uintptr(unsafe.Pointer(&path[0]))), mode, uint32(len(name))}
	h := semihost(sysOpen, unsafe.Pointer(blk))
	runtime.KeepAlive(path)
	if h == -1 {
		return nil, fmt.Errorf("semihosting: cannot open %s (host errno %d)", name, semihost(sysErrno, nil))
	}
	return &shFile{h: uint32(h), name: name}, nil
}

// openOrCreate opens a host file for reading and writing, creating it empty
// if it does not exist. Creating truncates, so a file that exists but cannot
// be opened for writing is an error, never recreated.
func openOrCreate(name string) (*shFile, error) {
	f, err := shOpen(name, modeReadRW)
	if err == nil {
		return f, nil
	}
	if r, rerr := shOpen(name, modeRB); rerr == nil {
		r.close()
		return nil, fmt.Errorf("semihosting: %s exists but cannot be opened for writing: %w", name, err)
	}
	return shOpen(name, modeCreate)
}

func (f *shFile) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	blk := &[1]uint32{f.h}
	semihost(sysClose, unsafe.Pointer(blk))
}

func (f *shFile) seek(off int64) error {
	if off < 0 || off > maxFileSize {
		return errors.New("semihosting: offset out of range")
	}
	blk := &[2]uint32{f.h, uint32(off)}
	if semihost(sysSeek, unsafe.Pointer(blk)) != 0 {
		return fmt.Errorf("semihosting: seek %s to %d failed", f.name, off)
	}
	return nil
}

// transfer reads or writes p; semihosting returns the bytes NOT moved.
func (f *shFile) transfer(op uint32, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	blk := &[3]uint32{f.h, uint32(uintptr(unsafe.Pointer(&p[0]))), uint32(len(p))}
	left := semihost(op, unsafe.Pointer(blk))
	runtime.KeepAlive(p)
	if left < 0 || int(left) > len(p) {
		return 0, fmt.Errorf("semihosting: transfer on %s failed", f.name)
	}
	return len(p) - int(left), nil
}

func (f *shFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off+int64(len(p)) > maxFileSize {
		return 0, errors.New("semihosting: read beyond 2 GiB")
	}
	if err := f.seek(off); err != nil {
		return 0, err
	}
	n, err := f.transfer(sysRead, p)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

func (f *shFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off+int64(len(p)) > maxFileSize {
		return 0, errors.New("semihosting: write beyond 2 GiB")
	}
	if err := f.seek(off); err != nil {
		return 0, err
	}
	n, err := f.transfer(sysWrite, p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// Read reads sequentially (for /dev/urandom).
func (f *shFile) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.transfer(sysRead, p)
	if err == nil && n == 0 && len(p) > 0 {
		err = io.EOF
	}
	return n, err
}

func (f *shFile) Size() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	blk := &[1]uint32{f.h}
	n := semihost(sysFlen, unsafe.Pointer(blk))
	if n < 0 {
		return 0, fmt.Errorf("semihosting: length of %s unknown", f.name)
	}
	return int64(n), nil
}

// exit ends QEMU with the given status.
func exit(code int) {
	if code == 0 {
		semihostExit(adpStoppedApplicationExit)
	}
	blk := &[2]uint32{adpStoppedApplicationExit, uint32(code)}
	semihost(sysExitExtended, unsafe.Pointer(blk))
	semihostExit(adpStoppedApplicationExit) // if the extended call is refused
}
