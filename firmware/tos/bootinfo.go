package tos

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// BootInfo is what the bootloader (firmware/boot) measured and checked
// before it started the OS, left for the OS in a fixed block of memory
// (board.BootInfoStart) that only the bootloader writes and the OS wipes
// once read. The OS reports OSHash as its firmware hash and derives the
// store's key under ReleaseKey (DeriveKeys).
type BootInfo struct {
	// OSHash is the SHA-256 of the OS ELF image the bootloader read,
	// checked against the release entry's Firmware hash.
	OSHash [32]byte
	// Release is the logged release's Version.
	Release uint64
	// ReleaseKey is the ID of the release key the log's checkpoint was
	// signed with (SHA-256 of its note verifier key).
	ReleaseKey ReleaseKeyID
}

// BootInfoSize is the encoded size: magic (8), format (4), reserved (4),
// OSHash (32), Release (8), ReleaseKey (32), SHA-256 of all before (32).
const BootInfoSize = 120

const (
	bootInfoMagic  = "COFFBOOT"
	bootInfoFormat = 1
)

// ErrNoBootInfo: the block holds no boot info (no bootloader ran).
var ErrNoBootInfo = errors.New("no boot info")

// Marshal encodes the block.
func (b *BootInfo) Marshal() [BootInfoSize]byte {
	var out [BootInfoSize]byte
	copy(out[0:8], bootInfoMagic)
	binary.LittleEndian.PutUint32(out[8:], bootInfoFormat)
	copy(out[16:48], b.OSHash[:])
	binary.LittleEndian.PutUint64(out[48:], b.Release)
	copy(out[56:88], b.ReleaseKey[:])
	sum := sha256.Sum256(out[:88])
	copy(out[88:], sum[:])
	return out
}

// ParseBootInfo decodes a block. Without the magic it is ErrNoBootInfo; with
// it, anything else wrong (format, reserved bytes, checksum) is an error of
// its own, never taken for "no boot info". The checksum catches a torn or
// stale block, not a forged one: only the bootloader writes this memory
// before the OS runs.
func ParseBootInfo(p []byte) (*BootInfo, error) {
	if len(p) < BootInfoSize || string(p[0:8]) != bootInfoMagic {
		return nil, ErrNoBootInfo
	}
	if f := binary.LittleEndian.Uint32(p[8:]); f != bootInfoFormat {
		return nil, errors.New("boot info: unknown format")
	}
	if binary.LittleEndian.Uint32(p[12:]) != 0 {
		return nil, errors.New("boot info: reserved bytes set")
	}
	sum := sha256.Sum256(p[:88])
	if subtle.ConstantTimeCompare(sum[:], p[88:BootInfoSize]) != 1 {
		return nil, errors.New("boot info: checksum mismatch")
	}
	b := &BootInfo{Release: binary.LittleEndian.Uint64(p[48:])}
	copy(b.OSHash[:], p[16:48])
	copy(b.ReleaseKey[:], p[56:88])
	return b, nil
}
