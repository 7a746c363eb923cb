package api

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/protocol"
)

// GoTEE's system call numbers (github.com/usbarmory/GoTEE/syscall), kept.
const (
	SysExit      = 0 // terminate the applet
	SysWrite     = 1 // print one character (r1)
	SysNanotime  = 2
	SysGetRandom = 3
)

// OpBase is the first Coffer operation number.
const OpBase = 0x100

// Operations. The buffer layout of each is given next to it; integers are
// big-endian.
const (
	// OpConfig: buffer of ConfigSize bytes ← the Config for this run. The
	// OS answers it once per applet start (it carries the store key).
	OpConfig = OpBase + iota
	// OpReady: buffer = a status line for the console (≤ MaxLog bytes);
	// r0 ← 0. The applet reports that it serves (or refuses to serve).
	OpReady
	// OpRecv: buffer of at least MaxMessage bytes ← [tag u32][request];
	// r0 ← its length, 0 if no request is waiting.
	OpRecv
	// OpSend: buffer = [tag u32][reply] (≤ MaxMessage bytes); r0 ← 0.
	OpSend
	// OpWait: buffer = [nanoseconds u64][flags u32]; the OS returns after
	// at most that long (r0 ← 0) or, with WaitRequest in flags, as soon as
	// a request is waiting (r0 ← 1).
	OpWait
	// OpReadSectors: buffer = [lba u64][room for k sectors], 1 ≤ k ≤
	// MaxSectors; the sectors are written after the lba; r0 ← k.
	OpReadSectors
	// OpWriteSectors: buffer = [lba u64][k sectors]; r0 ← k.
	OpWriteSectors
	// OpFlush: empty buffer; r0 ← 0 once earlier writes are stable.
	OpFlush
	// OpAnchorRead: buffer of AnchorCallSize bytes ← [write counter u32]
	// [the anchor block, AnchorBlockSize bytes]; r0 ← 0. The OS reads
	// both from its RPMB partition and authenticates them; the applet
	// never sees an RPMB frame or the RPMB key.
	OpAnchorRead
	// OpAnchorWrite: buffer = [4 bytes, ignored][the new anchor block],
	// AnchorCallSize bytes; the OS writes the block with an authenticated
	// RPMB write and puts the new write counter in the first 4 bytes;
	// r0 ← 0. After an error the write may or may not have happened.
	OpAnchorWrite
	// OpRandom: buffer of 1 to MaxRandom bytes ← random bytes.
	OpRandom
	// OpLog: buffer = one line of text (≤ MaxLog bytes) for the console.
	OpLog
	// OpExit: buffer = [code u32]; the applet ends (the OS decides whether
	// to start it again).
	OpExit
	opEnd
)

// OpName names an operation for logs.
func OpName(op uint32) string {
	names := [...]string{"config", "ready", "recv", "send", "wait", "read", "write", "flush",
		"anchor-read", "anchor-write", "random", "log", "exit"}
	if op >= OpBase && op < opEnd {
		return names[op-OpBase]
	}
	switch op {
	case SysExit:
		return "sys-exit"
	case SysWrite:
		return "sys-write"
	case SysNanotime:
		return "sys-nanotime"
	case SysGetRandom:
		return "sys-getrandom"
	}
	return fmt.Sprintf("op %#x", op)
}

// Sizes and bounds.
const (
	SectorSize    = storage.SectorSize // the record store's device sectors
	MaxSectors    = 64                 // per read or write call: 32 KiB
	SectorHeader  = 8                  // the lba before the sector data
	MaxSectorCall = SectorHeader + MaxSectors*SectorSize

	AnchorBlockSize = storage.AnchorSize // one RPMB block
	AnchorCallSize  = 4 + AnchorBlockSize

	WaitSize    = 12
	WaitRequest = 1 << 0

	MaxRandom = 4096
	MaxLog    = 512

	TagSize    = 4
	MaxMessage = TagSize + protocol.MaxPayload

	// MaxBuffer bounds every buffer the OS accepts.
	MaxBuffer = MaxSectorCall
)

// Errno is a negative result.
type Errno int32

const (
	EINVAL  Errno = -1 // malformed call: bad length, buffer outside the applet
	ERANGE  Errno = -2 // sectors outside the device
	EIO     Errno = -3 // the device failed
	EPERM   Errno = -4 // not allowed now (e.g. a second OpConfig)
	ENOSYS  Errno = -5 // unknown operation
	ECLOSED Errno = -6 // the OS is stopping this applet
	// ETAMPERED: the RPMB partition failed the OS's checks (a forged,
	// replayed or refused response, a "key not programmed" once the key
	// was, any RPMB failure); the OS refuses anchor service until it
	// restarts.
	ETAMPERED Errno = -7
)

func (e Errno) Error() string {
	switch e {
	case EINVAL:
		return "api: invalid call"
	case ERANGE:
		return "api: out of device range"
	case EIO:
		return "api: device I/O error"
	case EPERM:
		return "api: operation not permitted"
	case ENOSYS:
		return "api: unknown operation"
	case ECLOSED:
		return "api: applet is being stopped"
	case ETAMPERED:
		return "api: the RPMB anchor failed the OS's integrity checks"
	}
	return fmt.Sprintf("api: error %d", int32(e))
}

// Result turns a call's r0 into a value or an error.
func Result(r int32) (int, error) {
	if r < 0 {
		return 0, Errno(r)
	}
	return int(r), nil
}

// PutTag and Tag encode the request tag in front of a message.
func PutTag(b []byte, tag uint32) { binary.BigEndian.PutUint32(b, tag) }

// Tag reads the tag of a message buffer of at least TagSize bytes.
func Tag(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// SectorCallLen validates the length of a sector call buffer and returns the
// number of sectors it carries.
func SectorCallLen(n int) (int, error) {
	if n < SectorHeader+SectorSize || n > MaxSectorCall || (n-SectorHeader)%SectorSize != 0 {
		return 0, EINVAL
	}
	return (n - SectorHeader) / SectorSize, nil
}

// ErrConfig reports a configuration block that does not decode.
var ErrConfig = errors.New("api: malformed configuration")
