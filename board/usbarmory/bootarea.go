package usbarmory

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/board"
)

// The OS's boot area on the internal eMMC, which the bootloader
// (firmware/boot) reads: one header sector at BootAreaFirstSector (64 MiB
// in: clear of the bootloader's .imx, which the boot ROM reads from offset
// 1 KiB, and of the store's window at 1 GiB), the OS's ELF image from the
// next sector, then its proof bundle (releaselog.Proof, CBOR) from the
// first sector after the image. BootAreaImage lays it out; write it with
// `dd of=/dev/mmcblkN bs=512 seek=131072`. Nothing in it is trusted: the
// bootloader checks the image against the proof and the proof against the
// log policy it was built with. NOT YET TESTED ON HARDWARE.
const (
	BootAreaFirstSector = 64 << 20 / SectorSize
	BootAreaSectors     = 1 + (board.MaxOSImage+board.MaxProofSize)/SectorSize
)

// SectorSize is the eMMC's block size.
const SectorSize = 512

const bootAreaMagic = "COFFER OS AREA 1"

// BootArea is the boot area's header: the lengths of what follows it.
type BootArea struct {
	ImageLen, ProofLen uint32
}

// ParseBootArea reads a header sector.
func ParseBootArea(sector []byte) (BootArea, error) {
	if len(sector) != SectorSize || string(sector[:16]) != bootAreaMagic {
		return BootArea{}, errors.New("usbarmory: no OS boot area header")
	}
	for _, c := range sector[24:] {
		if c != 0 {
			return BootArea{}, errors.New("usbarmory: OS boot area header: reserved bytes set")
		}
	}
	a := BootArea{ImageLen: binary.LittleEndian.Uint32(sector[16:]), ProofLen: binary.LittleEndian.Uint32(sector[20:])}
	if a.ImageLen == 0 || a.ImageLen > board.MaxOSImage || a.ProofLen == 0 || a.ProofLen > board.MaxProofSize {
		return BootArea{}, fmt.Errorf("usbarmory: OS boot area header: image %d bytes, proof %d bytes", a.ImageLen, a.ProofLen)
	}
	return a, nil
}

// Marshal encodes the header sector.
func (a BootArea) Marshal() []byte {
	s := make([]byte, SectorSize)
	copy(s, bootAreaMagic)
	binary.LittleEndian.PutUint32(s[16:], a.ImageLen)
	binary.LittleEndian.PutUint32(s[20:], a.ProofLen)
	return s
}

// ImageSector and ProofSector are where the image and the proof start, as
// sector offsets from BootAreaFirstSector; ImageSectors and ProofSectors
// are how many sectors hold them.
func (a BootArea) ImageSector() uint64  { return 1 }
func (a BootArea) ImageSectors() uint64 { return sectors(a.ImageLen) }
func (a BootArea) ProofSector() uint64  { return 1 + a.ImageSectors() }
func (a BootArea) ProofSectors() uint64 { return sectors(a.ProofLen) }

func sectors(n uint32) uint64 { return (uint64(n) + SectorSize - 1) / SectorSize }

// BootAreaImage lays out a boot area holding osELF and proof, to be written
// at BootAreaFirstSector.
func BootAreaImage(osELF, proof []byte) ([]byte, error) {
	if len(osELF) == 0 || len(osELF) > board.MaxOSImage || len(proof) == 0 || len(proof) > board.MaxProofSize {
		return nil, fmt.Errorf("usbarmory: an OS image of %d bytes and a proof of %d bytes do not fit the boot area", len(osELF), len(proof))
	}
	a := BootArea{ImageLen: uint32(len(osELF)), ProofLen: uint32(len(proof))}
	out := make([]byte, (1+a.ImageSectors()+a.ProofSectors())*SectorSize)
	copy(out, a.Marshal())
	copy(out[a.ImageSector()*SectorSize:], osELF)
	copy(out[a.ProofSector()*SectorSize:], proof)
	return out, nil
}
