//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || illumos

package filelock

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// Lock blocks until this process holds an exclusive lock on path (created,
// mode 0600, if missing). unlock releases it; calling it again does
// nothing.
func Lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return sync.OnceFunc(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}), nil
}

// TryLock takes an exclusive lock on path (created, mode 0600, if missing)
// without waiting, and writes this process's id and command line into the
// file, so that a process refused the lock can say who holds it. If another
// process holds it, the error is a *HeldError (matching ErrHeld). The lock
// is per open file: a second TryLock on the same path fails even within
// one process. unlock empties the file and releases the lock; calling it
// again does nothing.
func TryLock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		b, _ := io.ReadAll(io.LimitReader(f, maxHolder))
		f.Close()
		return nil, &HeldError{Path: path, Holder: readableHolder(b)}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(holderLine()), 0)
	}
	if err != nil {
		f.Close() // closing the last descriptor releases the lock
		return nil, &os.PathError{Op: "write", Path: path, Err: err}
	}
	return sync.OnceFunc(func() {
		f.Truncate(0) // while still held, so that no later holder's line is cut
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}), nil
}
