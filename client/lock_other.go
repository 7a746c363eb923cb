//go:build !unix

package client

import (
	"errors"
	"os"
)

// tryLock: no flock here, so every leftover counts as held and is never
// removed.
func tryLock(f *os.File) (bool, error) { return false, errors.ErrUnsupported }

const canLock = false
