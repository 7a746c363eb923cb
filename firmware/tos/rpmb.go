package tos

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cofferhsm/coffer/internal/storage"
)

// The OS owns the RPMB partition: it holds the RPMB key, programs it at
// provisioning, and gives the applet only the anchor's block and write
// counter, authenticated (OpAnchorRead, OpAnchorWrite), never an RPMB frame.
//
// Programming the key sends it over the eMMC bus in clear (JESD84-B51 has
// no other way), and the eMMC's answer that it has no key yet is not
// authenticated: anyone on the bus can forge it. So the key must be
// programmed exactly once, at provisioning, in a trusted place, and never in
// the field. A one-time-programmable fuse records that it was: the OS blows
// it before it first sends the key, and once it is blown a "key not
// programmed" answer, or any other RPMB failure, is tampering: the OS
// refuses anchor service and never programs again.

// Fuse is a one-time-programmable bit (an OCOTP fuse on the i.MX6; a fake in
// emulators and tests): once blown it stays blown.
type Fuse interface {
	Blown() (bool, error)
	// Blow blows the bit, irreversibly.
	Blow() error
}

// TamperError reports an RPMB partition that failed the OS's checks. It
// wraps storage.ErrTampered and answers Tampered(), as the store's own
// integrity errors do.
type TamperError struct{ Reason string }

func (e *TamperError) Error() string  { return "rpmb: tampering: " + e.Reason }
func (e *TamperError) Unwrap() error  { return storage.ErrTampered }
func (e *TamperError) Tampered() bool { return true }

// RPMBSetup is what OpenAnchor needs from the board.
type RPMBSetup struct {
	// Transport carries RPMB frames to the eMMC's RPMB partition.
	Transport storage.RPMBTransport
	// Key is the RPMB key (Keys.RPMB).
	Key [32]byte
	// Fuse records that the key was programmed.
	Fuse Fuse
	// SecureBootClosed: the key may be programmed only on a device whose
	// secure boot is closed (on the i.MX6: HAB closed and the SNVS in a
	// secure state), since until then the device-unique key it is derived
	// from is a test key shared by every chip.
	SecureBootClosed bool
	// InsecureEmulator lets an emulated board flagged insecure (QEMU,
	// tests), whose secure boot is never closed, program its emulated
	// partition anyway. Hardware boards never set it.
	InsecureEmulator bool
	// Log prints one line on the console.
	Log func(line string)
}

// anchorBlock is the RPMB block the store's anchor lives in.
const anchorBlock = 0

// OpenAnchor checks the RPMB partition against the fuse and returns the
// store's anchor in it:
//
//   - fuse blown: the partition must answer, authenticated, under Key;
//     anything else is tampering;
//   - fuse not blown, partition answering under Key (programmed before the
//     fuse was in use): the fuse is blown now;
//   - fuse not blown, partition saying it has no key: the device's
//     provisioning. With secure boot closed (or on an insecure emulator)
//     the fuse is blown first, then the key programmed and checked;
//     otherwise nothing is programmed;
//   - anything else (a partition programmed with another key): refused.
//
// On error the returned Anchor is still usable: every call fails with that
// error, so the applet runs and answers each request with it.
func OpenAnchor(s RPMBSetup) (*Anchor, error) {
	logf := func(format string, args ...any) {
		if s.Log != nil {
			s.Log(fmt.Sprintf(format, args...))
		}
	}
	refuse := func(err error) (*Anchor, error) {
		logf("RPMB: REFUSING ANCHOR SERVICE: %v", err)
		return &Anchor{err: err}, err
	}
	a := storage.NewRPMBAnchor(s.Transport, s.Key, anchorBlock)
	blown, err := s.Fuse.Blown()
	if err != nil {
		return refuse(fmt.Errorf("rpmb: reading the provisioning fuse: %w", err))
	}
	_, _, err = a.Read()
	switch {
	case blown && err == nil:
	case blown:
		return refuse(&TamperError{fmt.Sprintf("the provisioning fuse says the RPMB key was programmed, but the partition answers: %v (never programming it again)", err)})
	case err == nil:
		logf("RPMB: the partition holds this device's key but the provisioning fuse is not blown: blowing it")
		if err := s.Fuse.Blow(); err != nil {
			return refuse(fmt.Errorf("rpmb: blowing the provisioning fuse: %w", err))
		}
	case keyNotProgrammed(err):
		if !s.SecureBootClosed && !s.InsecureEmulator {
			return refuse(errors.New("rpmb: the RPMB key is not programmed and secure boot is not closed: not provisioning (close secure boot, then boot once in a trusted place)"))
		}
		logf("RPMB: provisioning: blowing the provisioning fuse, then programming the RPMB key; the key crosses the eMMC bus this once, so this boot must happen in a trusted place")
		if err := s.Fuse.Blow(); err != nil {
			return refuse(fmt.Errorf("rpmb: blowing the provisioning fuse: %w", err))
		}
		if b, err := s.Fuse.Blown(); err != nil || !b {
			return refuse(fmt.Errorf("rpmb: the provisioning fuse reads %v after blowing it (%v)", b, err))
		}
		if err := a.ProgramKey(); err != nil {
			return refuse(&TamperError{fmt.Sprintf("programming the RPMB key: %v", err)})
		}
		if _, _, err := a.Read(); err != nil {
			return refuse(&TamperError{fmt.Sprintf("the partition does not answer under the key just programmed: %v", err)})
		}
		logf("RPMB: key programmed; the fuse is blown, so it is never sent again")
	default:
		var t interface{ Tampered() bool }
		if errors.As(err, &t) && t.Tampered() {
			return refuse(&TamperError{fmt.Sprintf("the partition does not answer under this device's key: %v", err)})
		}
		return refuse(fmt.Errorf("rpmb: %w", err))
	}
	return &Anchor{rpmb: a, log: s.Log}, nil
}

func keyNotProgrammed(err error) bool {
	var re *storage.RPMBError
	return errors.As(err, &re) && re.Result&^storage.RPMBCounterExpired == storage.RPMBKeyNotProgrammed
}

// Anchor is the record store's anchor as the OS keeps it: one block of the
// RPMB partition, authenticated under a key only the OS holds. It is a
// storage.Anchor. The partition was checked at OpenAnchor, so any failure
// afterwards is tampering (a dying eMMC looks the same and ends service the
// same way): the first one is latched, and every later call fails with it
// until the OS restarts.
type Anchor struct {
	mu   sync.Mutex
	rpmb *storage.RPMBAnchor
	err  error
	log  func(string)
}

var _ storage.Anchor = (*Anchor)(nil)

// Read returns the anchored block and the write counter.
func (a *Anchor) Read() (data [storage.AnchorSize]byte, counter uint32, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return data, 0, a.err
	}
	data, counter, err = a.rpmb.Read()
	if err != nil {
		return data, 0, a.fail(err)
	}
	return data, counter, nil
}

// Write writes the anchored block and returns the new write counter.
func (a *Anchor) Write(data [storage.AnchorSize]byte) (uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return 0, a.err
	}
	c, err := a.rpmb.Write(data)
	if err != nil {
		return 0, a.fail(err)
	}
	return c, nil
}

// Err returns the error every call fails with, or nil.
func (a *Anchor) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *Anchor) fail(err error) error {
	a.err = &TamperError{fmt.Sprintf("the RPMB partition failed after it was checked: %v", err)}
	if a.log != nil {
		a.log("RPMB: REFUSING ANCHOR SERVICE until restart: " + a.err.Error())
	}
	return a.err
}
