//go:build tamago && board_usbarmory && arm

package usbarmory

import (
	"github.com/usbarmory/tamago/soc/nxp/usdhc"

	"github.com/cofferhsm/coffer/internal/storage"
)

// emmcDevice is the store's window of eMMC sectors. The eMMC's volatile
// cache is not enabled by tamago's driver, so a completed write is on the
// flash and Flush has nothing to do.
type emmcDevice struct {
	card    *usdhc.USDHC
	first   uint64
	sectors uint64
}

func (d *emmcDevice) Sectors() uint64 { return d.sectors }

func (d *emmcDevice) ReadSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil || len(p) == 0 {
		return err
	}
	return d.card.ReadBlocks(int(d.first+lba), p)
}

func (d *emmcDevice) WriteSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil || len(p) == 0 {
		return err
	}
	return d.card.WriteBlocks(int(d.first+lba), p)
}

func (d *emmcDevice) Flush() error { return nil }
