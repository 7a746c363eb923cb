package qemu

import (
	"errors"

	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

// RPMBBlocks is the emulated partition's size: block 0 holds the store's
// anchor, block 1 the boot chain's minimum release version (firmware/tos).
const RPMBBlocks = 2

// OpenEmulatedRPMB returns the emulated RPMB partition kept in f: what the
// QEMU board offers in place of the eMMC's RPMB. It is the software vault's
// emulator (emulate.OpenRPMBEmulator: RPMBBlocks blocks, in the same file
// format), over the host file; an empty file is a new partition with no key
// programmed, and a one-block file from a build before the boot chain is
// grown, keeping its key, counter and anchor.
//
// Towards the applet it behaves as the real partition does, but it is not
// replay protected against the host, which can put back an old copy of the
// file.
func OpenEmulatedRPMB(f File) (*emulate.RPMBEmulator, error) {
	var magic [8]byte
	if n, _ := f.ReadAt(magic[:], 0); n == len(magic) && string(magic[:]) == "CQRPMB01" {
		return nil, errors.New("the emulated RPMB file was written by an older build (format CQRPMB01); " +
			"remove it and the store file to start a new vault")
	}
	return emulate.OpenRPMBEmulator(f, RPMBBlocks)
}
