//go:build tamago && board_usbarmory && arm

package usbarmory

import (
	"fmt"

	usbarmory "github.com/usbarmory/tamago/board/usbarmory/mk2"
	"github.com/usbarmory/tamago/soc/nxp/usdhc"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/internal/storage"
)

var _ board.Booter = (*mk2)(nil)

func (*mk2) ReleaseBoard() string { return "usbarmory" }

// BootImage reads the OS image and its proof from the eMMC's boot area
// (bootarea.go). NOT YET TESTED ON HARDWARE.
func (*mk2) BootImage() (osELF, proof []byte, err error) {
	card, err := detectOnce()
	if err != nil {
		return nil, nil, err
	}
	if bs := card.Info().BlockSize; bs != SectorSize {
		return nil, nil, fmt.Errorf("eMMC: block size %d", bs)
	}
	hdr := make([]byte, SectorSize)
	if err := card.ReadBlocks(BootAreaFirstSector, hdr); err != nil {
		return nil, nil, fmt.Errorf("eMMC: boot area header: %w", err)
	}
	a, err := ParseBootArea(hdr)
	if err != nil {
		return nil, nil, err
	}
	read := func(first, count uint64, n uint32) ([]byte, error) {
		b := make([]byte, count*SectorSize)
		if err := card.ReadBlocks(int(BootAreaFirstSector+first), b); err != nil {
			return nil, err
		}
		return b[:n], nil
	}
	if osELF, err = read(a.ImageSector(), a.ImageSectors(), a.ImageLen); err != nil {
		return nil, nil, fmt.Errorf("eMMC: OS image: %w", err)
	}
	if proof, err = read(a.ProofSector(), a.ProofSectors(), a.ProofLen); err != nil {
		return nil, nil, fmt.Errorf("eMMC: OS proof: %w", err)
	}
	return osELF, proof, nil
}

func (*mk2) RPMB() (storage.RPMBTransport, error) {
	card, err := detectOnce()
	if err != nil {
		return nil, err
	}
	return card, nil
}

var detected bool

// detectOnce initialises the eMMC the first time the bootloader needs it.
func detectOnce() (*usdhc.USDHC, error) {
	card := usbarmory.MMC
	if !detected {
		if err := card.Detect(); err != nil {
			return nil, fmt.Errorf("eMMC: %w", err)
		}
		detected = true
	}
	return card, nil
}
