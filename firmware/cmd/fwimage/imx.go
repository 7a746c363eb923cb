package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// The layout of an unsigned i.MX6 boot image as mkimage (-T imximage, a v2
// configuration with BOOT_FROM sd and a CSF directive) writes it, and as HAB
// signing needs it. usbarmory/crucible's habtool reads the IVT and the boot
// data, signs the whole file as one block starting at the IVT's self
// address, and writes a CSF padded to exactly
//
//	boot data length - IVT offset - file length
//
// bytes, which is appended (cat image.imx image.csf). It changes nothing in
// the image: the IVT it signs must already point at the CSF, where cat will
// put it (self + file length), and the boot data must already cover the CSF's
// room. The boot ROM loads boot data length bytes from the device at
// start, runs the DCD, then HAB authenticates [self, self + file length) with
// the CSF found at the IVT's CSF address.
const (
	// imxIVTOffset is where the file goes on an SD card or eMMC (byte 1024:
	// dd seek=2 with bs=512), so the IVT is at boot data start + 1024.
	imxIVTOffset = 0x400
	// imxInitLoad is mkimage's initial load size for SD/eMMC: the IVT,
	// boot data and DCD fill [IVT offset, 4 KiB), the payload follows.
	imxInitLoad = 0x1000
	// imxHeaderRoom is the room for IVT, boot data and DCD in the file.
	imxHeaderRoom = imxInitLoad - imxIVTOffset
	// imxMinCSFRoom is the least CSF room we accept. habtool's CSF (its
	// commands, an SRK table of four RSA-2048 keys, two X.509 certificates
	// and two CMS signatures) is about 5-6 KiB; NXP's guides reserve 8 KiB
	// (CSF 0x2000), tamago's USB armory configuration 16 KiB (CSF 0x4000).
	imxMinCSFRoom = 0x2000
	// imxMaxDCD is the i.MX6 boot ROM's limit on a DCD, header included.
	imxMaxDCD = 1768

	imxTagIVT = 0xd1
	imxTagDCD = 0xd2
	imxIVTLen = 0x20
)

// imxLayout is what checkIMX read from an image.
type imxLayout struct {
	Entry, Self, BootData, DCD, CSF uint32
	Start, Length, Plugin           uint32
	DCDLen                          int
	CSFRoom                         uint32 // what habtool pads its CSF to
}

// ErrIMXLayout is wrapped by every layout error.
var ErrIMXLayout = errors.New("imx layout")

func imxErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrIMXLayout}, args...)...)
}

// habVersionOK accepts the HAB versions the i.MX6 ROM takes for the IVT and
// the DCD: 4.0 (what mkimage and habtool write) and 4.1.
func habVersionOK(v byte) bool { return v == 0x40 || v == 0x41 }

// checkIMX checks that img, an unsigned boot image, has the layout HAB
// signing with habtool needs (see the comment at the top of this file), and
// says which field is wrong when it does not.
func checkIMX(img []byte) (*imxLayout, error) {
	if len(img) < imxHeaderRoom {
		return nil, imxErr("%d bytes: shorter than the %#x-byte header (IVT, boot data, DCD)", len(img), imxHeaderRoom)
	}
	le := binary.LittleEndian
	if img[0] != imxTagIVT {
		return nil, imxErr("IVT tag %#02x at offset 0, want %#02x", img[0], imxTagIVT)
	}
	if n := binary.BigEndian.Uint16(img[1:3]); n != imxIVTLen {
		return nil, imxErr("IVT length %#x, want %#x", n, imxIVTLen)
	}
	if !habVersionOK(img[3]) {
		return nil, imxErr("IVT version %#02x, want 0x40 or 0x41", img[3])
	}
	l := &imxLayout{
		Entry:    le.Uint32(img[4:]),
		DCD:      le.Uint32(img[12:]),
		BootData: le.Uint32(img[16:]),
		Self:     le.Uint32(img[20:]),
		CSF:      le.Uint32(img[24:]),
	}
	if r1, r2 := le.Uint32(img[8:]), le.Uint32(img[28:]); r1 != 0 || r2 != 0 {
		return nil, imxErr("IVT reserved words %#x, %#x, want 0", r1, r2)
	}
	// Pointers are absolute addresses; in the file they are offsets from self.
	off := func(name string, p uint32, size int, end int) (int, error) {
		if p < l.Self || uint64(p-l.Self)+uint64(size) > uint64(end) {
			return 0, imxErr("%s pointer %#x outside the header [self %#x, +%#x)", name, p, l.Self, end)
		}
		if (p-l.Self)%4 != 0 {
			return 0, imxErr("%s pointer %#x not word-aligned", name, p)
		}
		return int(p - l.Self), nil
	}
	bd, err := off("boot data", l.BootData, 12, imxHeaderRoom)
	if err != nil {
		return nil, err
	}
	if bd < imxIVTLen {
		return nil, imxErr("boot data at IVT offset %#x overlaps the IVT", bd)
	}
	l.Start, l.Length, l.Plugin = le.Uint32(img[bd:]), le.Uint32(img[bd+4:]), le.Uint32(img[bd+8:])
	if l.Plugin != 0 {
		return nil, imxErr("boot data plugin flag %d, want 0 (a plugin image is not what we sign)", l.Plugin)
	}
	if uint64(l.Start)+imxIVTOffset != uint64(l.Self) {
		return nil, imxErr("IVT self %#x, want boot data start %#x + %#x (the IVT's place on SD/eMMC)", l.Self, l.Start, imxIVTOffset)
	}
	if l.DCD == 0 {
		return nil, imxErr("no DCD (pointer 0): the DDR would not be set up before the image loads")
	}
	dcd, err := off("DCD", l.DCD, 4, imxHeaderRoom)
	if err != nil {
		return nil, err
	}
	if dcd < bd+12 && dcd+4 > bd {
		return nil, imxErr("DCD at %#x overlaps the boot data at %#x", dcd, bd)
	}
	if dcd < imxIVTLen {
		return nil, imxErr("DCD at IVT offset %#x overlaps the IVT", dcd)
	}
	if img[dcd] != imxTagDCD {
		return nil, imxErr("DCD tag %#02x, want %#02x", img[dcd], imxTagDCD)
	}
	l.DCDLen = int(binary.BigEndian.Uint16(img[dcd+1:]))
	if !habVersionOK(img[dcd+3]) {
		return nil, imxErr("DCD version %#02x, want 0x40 or 0x41", img[dcd+3])
	}
	if l.DCDLen < 4 || l.DCDLen > imxMaxDCD {
		return nil, imxErr("DCD length %d, want 4..%d (the ROM's limit)", l.DCDLen, imxMaxDCD)
	}
	if dcd+l.DCDLen > imxHeaderRoom {
		return nil, imxErr("DCD [%#x, +%d) runs into the payload at %#x", dcd, l.DCDLen, imxHeaderRoom)
	}
	// The CSF: cat appends it to the file, so it lands at self + file
	// length, and the signed IVT must say so. A zero pointer means mkimage
	// had no CSF directive: such an image cannot be signed by appending.
	fileEnd := uint64(l.Self) + uint64(len(img))
	if l.CSF == 0 {
		return nil, imxErr("CSF pointer 0: no room was made for a CSF (the imximage configuration needs a CSF line, e.g. CSF 0x4000)")
	}
	if uint64(l.CSF) != fileEnd {
		return nil, imxErr("CSF pointer %#x, want self + file length = %#x (where the appended CSF lands)", l.CSF, fileEnd)
	}
	if (l.CSF-l.Start)%imxInitLoad != 0 {
		return nil, imxErr("CSF at start + %#x, not 4 KiB-aligned as mkimage lays it out", l.CSF-l.Start)
	}
	end := uint64(l.Start) + uint64(l.Length)
	if end < fileEnd+imxMinCSFRoom {
		return nil, imxErr("boot data length %#x leaves %d bytes for the CSF after the image, want at least %#x", l.Length, int64(end)-int64(fileEnd), imxMinCSFRoom)
	}
	if l.Length%0x200 != 0 {
		return nil, imxErr("boot data length %#x is not a multiple of 512 (the ROM loads whole blocks)", l.Length)
	}
	l.CSFRoom = uint32(end - fileEnd)
	if uint64(l.Entry) < uint64(l.Start)+imxInitLoad || uint64(l.Entry) >= fileEnd {
		return nil, imxErr("entry %#x outside the payload [%#x, %#x)", l.Entry, l.Start+imxInitLoad, fileEnd)
	}
	return l, nil
}

// checkIMXMatchesELF checks that the image boots exactly the ELF: the same
// entry point, and a payload that is the ELF's flat image (fwimage bin)
// loaded at its own address, followed only by mkimage's zero padding.
func checkIMXMatchesELF(img []byte, l *imxLayout, f *elf.File) error {
	if uint64(l.Entry) != f.Entry {
		return imxErr("IVT entry %#x, the ELF's is %#x", l.Entry, f.Entry)
	}
	flatImg, lo, err := flat(f)
	if err != nil {
		return err
	}
	if lo != uint64(l.Start)+imxInitLoad {
		return imxErr("the ELF loads at %#x, the image's payload at %#x", lo, uint64(l.Start)+imxInitLoad)
	}
	payload := img[imxHeaderRoom:]
	if len(payload) < len(flatImg) || !bytes.Equal(payload[:len(flatImg)], flatImg) {
		return imxErr("the payload is not the ELF's loadable segments")
	}
	for i, c := range payload[len(flatImg):] {
		if c != 0 {
			return imxErr("non-zero byte after the ELF's image at file offset %#x", imxHeaderRoom+len(flatImg)+i)
		}
	}
	return nil
}
