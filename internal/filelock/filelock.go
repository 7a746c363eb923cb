package filelock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrHeld is matched by the error of TryLock when another process holds the
// lock.
var ErrHeld = errors.New("filelock: held by another process")

// HeldError is TryLock's error when another process holds the lock: Holder
// is what that process wrote into the lock file (its id and command line),
// escaped for printing, or empty if it had not written it yet.
type HeldError struct {
	Path   string
	Holder string
}

func (e *HeldError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "a process that has not written its id yet"
	}
	return fmt.Sprintf("%s is locked by %s", e.Path, holder)
}

func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// maxHolder bounds what TryLock writes into, and reads back from, a lock
// file.
const maxHolder = 512

// holderLine describes this process for the lock file: "pid N: ARGS".
func holderLine() string {
	s := "pid " + strconv.Itoa(os.Getpid()) + ": " + strings.Join(os.Args, " ")
	if len(s) > maxHolder-1 {
		s = s[:maxHolder-1]
	}
	return s + "\n"
}

// readableHolder makes what another process wrote printable: one line,
// quoted (Go syntax) if it holds anything but printable text.
func readableHolder(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
