package tos

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// Image is where an image is loaded (the applet by the OS, the OS by the
// bootloader): a region of memory at physical address Base of Size bytes,
// written through Write (an offset from Base).
type Image struct {
	Base  uint32
	Size  uint32
	Write func(off uint32, p []byte)
	// Name names the image in errors ("applet image" if empty).
	Name string
}

// LoadELF copies the loadable segments of a 32-bit little-endian ARM ELF
// executable into img, zeroing what a segment reserves beyond its file
// contents, and returns the entry point. Every segment and the entry point
// must lie inside the region.
func LoadELF(image []byte, img Image) (entry uint32, err error) {
	name := img.Name
	if name == "" {
		name = "applet image"
	}
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if f.Class != elf.ELFCLASS32 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_ARM || f.Type != elf.ET_EXEC {
		return 0, fmt.Errorf("%s: not a 32-bit little-endian ARM executable", name)
	}
	inside := func(addr, size uint64) bool {
		return addr >= uint64(img.Base) && size <= uint64(img.Size) && addr-uint64(img.Base) <= uint64(img.Size)-size
	}
	// Check everything before writing anything.
	if !inside(f.Entry, 4) {
		return 0, fmt.Errorf("%s: entry point %#x outside its region", name, f.Entry)
	}
	var load []*elf.Prog
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz || !inside(p.Paddr, p.Memsz) {
			return 0, fmt.Errorf("%s: segment at %#x (%d bytes) outside its region %#x-%#x",
				name, p.Paddr, p.Memsz, img.Base, uint64(img.Base)+uint64(img.Size))
		}
		load = append(load, p)
	}
	if len(load) == 0 {
		return 0, fmt.Errorf("%s: no loadable segment", name)
	}
	for _, p := range load {
		off := uint32(p.Paddr - uint64(img.Base))
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return 0, fmt.Errorf("%s: segment at %#x: %w", name, p.Paddr, err)
		}
		img.Write(off, data)
		if zero := p.Memsz - p.Filesz; zero > 0 {
			const chunk = 64 << 10
			z := make([]byte, min(zero, chunk))
			for done := uint64(0); done < zero; done += uint64(len(z)) {
				n := min(zero-done, chunk)
				img.Write(off+uint32(p.Filesz+done), z[:n])
			}
		}
	}
	return uint32(f.Entry), nil
}
