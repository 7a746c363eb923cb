// Command fwimage turns a firmware ELF into what i.MX boot tools want, so
// that building a flashable image needs no cross binutils:
//
//	fwimage bin  IN.elf OUT.bin   the loadable segments as one flat image,
//	                              from the first section of the program
//	                              (.text: not the headers the linker puts
//	                              below it), gaps and .bss zero-filled (what
//	                              objcopy -O binary gives for tamago's
//	                              section list)
//	fwimage entry IN.elf          print the entry point (hex)
//	fwimage patch-entry IN.elf OUT.imx
//	                              write the ELF entry point into the IVT of
//	                              an imximage made by mkimage (offset 4)
//	fwimage check-imx IN.imx [IN.elf]
//	                              check that an unsigned image has the
//	                              layout HAB signing needs (imx.go), and,
//	                              given the ELF, that it boots exactly it
//	fwimage toolchain-path TAMAGO_MODULE_VERSION
//	                              print where the tamago tool keeps the
//	                              matching tamago-go (firmware.mk's default
//	                              TAMAGO; the tool itself cannot be asked)
//	fwimage dev-proof TESTDIR BOARD OS.elf OUT.proof
//	                              a proof bundle logging OS.elf as release 1
//	                              of BOARD, signed with the public TEST keys
//	                              in TESTDIR (make qemu BOOT=1)
//	fwimage boot-area OS.elf OS.proof OUT.img
//	                              the USB armory's eMMC boot area, to write
//	                              at sector 131072 (64 MiB)
package main

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cofferhsm/coffer/internal/buildinfo"
)

func main() {
	if len(os.Args) > 1 && buildinfo.IsVersionFlag(os.Args[1]) {
		fmt.Print(buildinfo.Line("fwimage"))
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fwimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: fwimage bin IN.elf OUT.bin | entry IN.elf | patch-entry IN.elf OUT.imx | check-imx IN.imx [IN.elf] | toolchain-path VERSION | dev-proof TESTDIR BOARD OS.elf OUT.proof | boot-area OS.elf OS.proof OUT.img")
	}
	switch {
	case args[0] == "check-imx":
		if len(args) > 3 {
			return errors.New("usage: fwimage check-imx IN.imx [IN.elf]")
		}
		return runCheckIMX(args[1], args[2:])
	case args[0] == "dev-proof" && len(args) == 5:
		return devProof(args[1], args[2], args[3], args[4])
	case args[0] == "boot-area" && len(args) == 4:
		return bootArea(args[1], args[2], args[3])
	}
	if args[0] == "toolchain-path" {
		if len(args) != 2 {
			return errors.New("usage: fwimage toolchain-path TAMAGO_MODULE_VERSION")
		}
		root, err := toolchainRoot(args[1])
		if err != nil {
			return err
		}
		fmt.Println(root)
		return nil
	}
	f, err := elf.Open(args[1])
	if err != nil {
		return err
	}
	defer f.Close()
	switch args[0] {
	case "bin":
		if len(args) != 3 {
			return errors.New("usage: fwimage bin IN.elf OUT.bin")
		}
		b, _, err := flat(f)
		if err != nil {
			return err
		}
		return os.WriteFile(args[2], b, 0o644)
	case "entry":
		fmt.Printf("%#x\n", f.Entry)
		return nil
	case "patch-entry":
		if len(args) != 3 {
			return errors.New("usage: fwimage patch-entry IN.elf OUT.imx")
		}
		out, err := os.OpenFile(args[2], os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		var e [4]byte
		binary.LittleEndian.PutUint32(e[:], uint32(f.Entry))
		if _, err := out.WriteAt(e[:], 4); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func runCheckIMX(path string, elfPath []string) error {
	img, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	l, err := checkIMX(img)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(elfPath) == 1 {
		f, err := elf.Open(elfPath[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if err := checkIMXMatchesELF(img, l, f); err != nil {
			return fmt.Errorf("%s against %s: %w", path, elfPath[0], err)
		}
	}
	fmt.Printf("check-imx: %s: IVT at self %#x, entry %#x, boot data start %#x length %#x, DCD %d bytes, CSF at %#x with %#x bytes of room: ready for habtool\n",
		path, l.Self, l.Entry, l.Start, l.Length, l.DCDLen, l.CSF, l.CSFRoom)
	return nil
}

// flat lays the PT_LOAD segments out from the lowest address of a section
// that is part of the program (allocated, not a note), as objcopy -O binary
// does for the sections tamago's own Makefiles name (.text, .rodata, ...).
// Go's linker puts the ELF and program headers and its notes in the first
// segment, a page below .text; they are not part of the program, and
// starting there would put every byte one page away from its link address
// once mkimage loads the flat image at -e (.text's address).
func flat(f *elf.File) ([]byte, uint64, error) {
	var lo, hi uint64
	first := true
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Paddr != p.Vaddr {
			return nil, 0, fmt.Errorf("segment at %#x loads at %#x: not supported", p.Vaddr, p.Paddr)
		}
		if first || p.Paddr < lo {
			lo = p.Paddr
		}
		if first || p.Paddr+p.Memsz > hi {
			hi = p.Paddr + p.Memsz
		}
		first = false
	}
	if first {
		return nil, 0, errors.New("no loadable segment")
	}
	if start, ok := programStart(f); ok {
		if start < lo || start >= hi {
			return nil, 0, fmt.Errorf("first section at %#x outside the segments [%#x, %#x)", start, lo, hi)
		}
		lo = start
	}
	if hi-lo > 256<<20 {
		return nil, 0, fmt.Errorf("image spans %d MiB", (hi-lo)>>20)
	}
	b := make([]byte, hi-lo)
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		seg := make([]byte, p.Filesz)
		if _, err := p.ReadAt(seg, 0); err != nil {
			return nil, 0, err
		}
		addr := p.Paddr
		if addr < lo { // the headers before the program: left out
			skip := lo - addr
			if skip >= uint64(len(seg)) {
				continue
			}
			seg, addr = seg[skip:], lo
		}
		copy(b[addr-lo:], seg)
	}
	return b, lo, nil
}

// programStart is the lowest address of an allocated section other than a
// note, if the ELF has section headers.
func programStart(f *elf.File) (uint64, bool) {
	var lo uint64
	found := false
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOTE || s.Size == 0 {
			continue
		}
		if !found || s.Addr < lo {
			lo, found = s.Addr, true
		}
	}
	return lo, found
}
