package storage

import "errors"

// SectorSize is the unit of every device transfer: eMMC, SD and the files
// that stand in for them all read and write whole 512-byte sectors. The
// applet-OS interface (firmware/api) carries sectors of this size too.
const SectorSize = 512

// Device is a block device of fixed size, addressed in whole sectors.
//
// Writes may be cached by the device and reach stable storage in any order
// until Flush returns; a write interrupted by a power cut may leave any
// prefix of its sectors written (a sector itself is written entirely or not
// at all). The record store never relies on more than that.
//
// On hardware the board plugs its eMMC driver in behind this interface (for
// tamago's usdhc, ReadBlocks/WriteBlocks and a cache flush); the applet
// reaches it through the OS (applet/runtime).
type Device interface {
	// ReadSectors fills p, whose length is a multiple of SectorSize, from
	// the sectors starting at lba.
	ReadSectors(lba uint64, p []byte) error
	// WriteSectors writes p, whose length is a multiple of SectorSize, to
	// the sectors starting at lba.
	WriteSectors(lba uint64, p []byte) error
	// Flush returns once every write that returned before the call is on
	// stable storage.
	Flush() error
	// Sectors is the size of the device in sectors.
	Sectors() uint64
}

// ErrRange reports a transfer outside the device or of a length that is not
// a whole number of sectors.
var ErrRange = errors.New("storage: transfer out of device range or not sector aligned")

// CheckRange validates a transfer of n bytes at lba on a device of the given
// size, without overflowing on 32-bit platforms. Every Device checks its
// transfers with it, so that all of them refuse the same requests.
func CheckRange(lba uint64, n int, sectors uint64) error {
	if n < 0 || n%SectorSize != 0 {
		return ErrRange
	}
	count := uint64(n / SectorSize)
	if lba > sectors || count > sectors-lba {
		return ErrRange
	}
	return nil
}
