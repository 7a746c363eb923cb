package board

import (
	"errors"
	"io"
	"time"

	"github.com/cofferhsm/coffer/internal/storage"
)

// Board is one hardware (or emulated) platform, as the Trusted OS uses it.
// Methods are called once each, in this order, from the OS's main goroutine
// (Halt excepted).
type Board interface {
	// Name is a short name for logs and the identity bundle.
	Name() string
	// Init brings up what the OS needs beyond tamago's own init: DMA
	// region, clocks, console.
	Init() error
	// Insecure reports why secrets on this board are not protected by
	// hardware ("" when they are): emulation, development keys, secure
	// boot not closed. The OS says it loudly at boot, and the vault puts
	// the flag in its identity bundle.
	Insecure() string
	// DeviceKey returns the device-unique key, from which the OS derives
	// one key per purpose (firmware/tos DeriveKeys: the store's sealing
	// key, the RPMB key). Hardware boards refuse (error) unless secure
	// boot is closed.
	DeviceKey() ([32]byte, error)
	// SecureBootClosed reports whether secure boot is closed (on the
	// i.MX6: HAB closed and the SNVS in a secure state). The OS programs
	// the RPMB key only then; emulators always say false.
	SecureBootClosed() bool
	// DevProvisioningSeed returns the seed of a development provisioning
	// key with which an emulated vault signs its own identity bundle, or
	// false on a board that is provisioned by its owner.
	DevProvisioningSeed() ([32]byte, bool)
	// Storage returns the record store's block device and the RPMB
	// partition that holds its anchor.
	Storage() (storage.Device, storage.RPMBTransport, error)
	// RPMBKeyFuse returns the one-time-programmable bit the OS blows
	// before it programs the RPMB key (a fake on emulators), and where it
	// is, for the console.
	RPMBKeyFuse() (Fuse, string, error)
	// MinAnchorInterval is the least time between anchor writes, to spare
	// the RPMB write counter.
	MinAnchorInterval() time.Duration
	// Rand is the source of the applet's randomness.
	Rand() io.Reader
	// Transport returns the link to the host that carries protocol frames.
	Transport() (io.ReadWriter, error)
	// Halt stops the machine (QEMU exits with code).
	Halt(code int)
}

// Fuse is a one-time-programmable bit: once blown it stays blown.
type Fuse interface {
	Blown() (bool, error)
	Blow() error
}

var current Board

// Register makes b the board the firmware runs on. Board packages call it
// from init; two registrations mean two board tags and panic.
func Register(b Board) {
	if current != nil {
		panic("board: two boards registered: " + current.Name() + " and " + b.Name())
	}
	current = b
}

// ErrNoBoard is returned by Current when no board package registered: the
// firmware was built without a board_NAME tag.
var ErrNoBoard = errors.New("board: no board registered (build with -tags board_qemu or board_usbarmory)")

// Current returns the registered board.
func Current() (Board, error) {
	if current == nil {
		return nil, ErrNoBoard
	}
	return current, nil
}

// Booter is what the bootloader (firmware/boot) needs from a board beyond
// Board's Init, DeviceKey, RPMBKeyFuse and Halt: where the OS image and its
// proof bundle are kept, and the RPMB partition alone (the bootloader never
// opens the record store).
type Booter interface {
	// ReleaseBoard is the board's name in release entries
	// (releaselog.Release.Board): "usbarmory", "qemu".
	ReleaseBoard() string
	// BootImage reads the OS's ELF image and its proof bundle from the
	// board's boot storage. Neither is trusted: the bootloader checks both.
	BootImage() (osELF, proof []byte, err error)
	// RPMB returns the RPMB partition.
	RPMB() (storage.RPMBTransport, error)
}

// Bounds of what BootImage reads.
const (
	MaxOSImage   = 64 << 20
	MaxProofSize = 64 << 10
)
