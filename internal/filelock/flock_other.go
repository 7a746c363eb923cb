//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd || illumos)

package filelock

import (
	"errors"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("filelock: no file locking on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Lock fails: this system has no flock, and an unlocked update could be lost.
func Lock(path string) (unlock func(), err error) { return nil, errUnsupported }

// TryLock fails: this system has no flock, and two processes sharing state
// unlocked could destroy it.
func TryLock(path string) (unlock func(), err error) { return nil, errUnsupported }
