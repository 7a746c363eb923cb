package storage

import (
	"errors"
	"fmt"
)

// AnchorSize is the size of the anchored data: one RPMB block.
const AnchorSize = RPMBBlockSize

// Anchor is a monotonic anchor with RPMB semantics: one authenticated block
// whose writes advance a write counter that never goes down. The record
// store writes its root there after every commit. RPMBAnchor implements it
// on an RPMB partition; the Trusted OS serves it to the applet
// (firmware/tos), and the applet's runtime is its client (applet/runtime).
type Anchor interface {
	// Read returns the anchored block (all zeros if never written) and the
	// current write counter, both authenticated.
	Read() (data [AnchorSize]byte, counter uint32, err error)
	// Write replaces the anchored block atomically and returns the new write
	// counter. After an error the write may or may not have happened.
	Write(data [AnchorSize]byte) (counter uint32, err error)
}

// ErrTampered is wrapped by every error that means stored data failed its
// integrity check: a hash or MAC mismatch, an old or foreign block, an
// anchor that does not match the store, a forged or replayed RPMB response.
// Whoever gets it refuses to serve the data concerned; it never returns
// stale or forged bytes.
var ErrTampered = errors.New("storage: integrity check failed")

// TamperError wraps ErrTampered with a reason. It also answers Tampered() so
// that packages that import none of the storage packages (the vault) can
// recognise it with errors.As(err, &interface{ Tampered() bool }).
type TamperError struct{ Reason string }

func (e *TamperError) Error() string  { return "integrity check failed: " + e.Reason }
func (e *TamperError) Unwrap() error  { return ErrTampered }
func (e *TamperError) Tampered() bool { return true }

// Tamperedf returns a TamperError whose reason is formatted as fmt.Sprintf
// does.
func Tamperedf(format string, a ...any) error {
	return &TamperError{fmt.Sprintf(format, a...)}
}
