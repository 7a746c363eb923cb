package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testIMX lays out an unsigned image the way mkimage does for a v2
// configuration with BOOT_FROM sd and CSF 0x4000 (checked against mkimage
// itself in TestSyntheticImageMatchesMkimage): IVT at 0, boot data at 0x20,
// DCD at 0x2c, payload at 0xc00 loaded at start + 0x1000, the payload
// zero-padded to 4 KiB, the CSF pointer at the end of the file and the boot
// data covering it and the CSF's room.
func testIMX(start, entry uint32, payload []byte, dcdWrites int) []byte {
	le := binary.LittleEndian
	padded := (len(payload) + 0xfff) &^ 0xfff
	img := make([]byte, imxHeaderRoom+padded)
	self := start + imxIVTOffset
	img[0], img[3] = imxTagIVT, 0x40
	binary.BigEndian.PutUint16(img[1:], imxIVTLen)
	le.PutUint32(img[4:], entry)
	le.PutUint32(img[12:], self+0x2c)
	le.PutUint32(img[16:], self+0x20)
	le.PutUint32(img[20:], self)
	le.PutUint32(img[24:], self+uint32(len(img)))
	le.PutUint32(img[0x20:], start)
	le.PutUint32(img[0x24:], uint32(len(img))+imxIVTOffset+0x4000)
	// DCD: header, one write command with dcdWrites address/value pairs.
	dcd := img[0x2c:]
	n := 4 + 4 + 8*dcdWrites
	dcd[0], dcd[3] = imxTagDCD, 0x40
	binary.BigEndian.PutUint16(dcd[1:], uint16(n))
	dcd[4], dcd[7] = 0xcc, 0x04
	binary.BigEndian.PutUint16(dcd[5:], uint16(4+8*dcdWrites))
	for i := 0; i < dcdWrites; i++ {
		binary.BigEndian.PutUint32(dcd[8+8*i:], 0x020c4068+4*uint32(i))
		binary.BigEndian.PutUint32(dcd[12+8*i:], 0xffffffff)
	}
	copy(img[imxHeaderRoom:], payload)
	return img
}

func validIMX() []byte {
	payload := bytes.Repeat([]byte{0xe1, 0xa0, 0x00, 0x00}, 0x2345)
	return testIMX(0x8000f000, 0x80012340, payload, 120)
}

func TestCheckIMXAcceptsMkimageLayout(t *testing.T) {
	img := validIMX()
	l, err := checkIMX(img)
	if err != nil {
		t.Fatal(err)
	}
	want := imxLayout{Entry: 0x80012340, Self: 0x8000f400, BootData: 0x8000f420, DCD: 0x8000f42c,
		CSF: 0x8000f400 + uint32(len(img)), Start: 0x8000f000, Length: uint32(len(img)) + 0x4400,
		DCDLen: 8 + 8*120, CSFRoom: 0x4000}
	if *l != want {
		t.Fatalf("layout %+v, want %+v", *l, want)
	}
}

// Every field HAB signing relies on, broken one at a time, is refused with
// an error naming it.
func TestCheckIMXRefusesEachBrokenField(t *testing.T) {
	le := binary.LittleEndian
	u32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint32(b[off:], v); return b }
	}
	add32 := func(off int, d int32) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint32(b[off:], uint32(int32(le.Uint32(b[off:]))+d)); return b }
	}
	set := func(off int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[off] = v; return b }
	}
	be16 := func(off int, v uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
	}
	for _, c := range []struct {
		name, want string
		mutate     func([]byte) []byte
	}{
		{"IVT tag", "IVT tag", set(0, 0xd2)},
		{"IVT length", "IVT length", be16(1, 0x24)},
		{"IVT version", "IVT version", set(3, 0x43)},
		{"reserved1", "reserved", u32(8, 1)},
		{"reserved2", "reserved", u32(28, 1)},
		{"self moved", "IVT self", func(b []byte) []byte {
			for _, off := range []int{12, 16, 20, 24} { // every pointer with it
				add32(off, 4)(b)
			}
			return b
		}},
		{"start moved", "IVT self", add32(0x20, -0x1000)},
		{"boot data outside the header", "boot data pointer", u32(16, 0x8000f400+imxHeaderRoom)},
		{"boot data before self", "boot data pointer", u32(16, 0x8000f3fc)},
		{"boot data in the IVT", "overlaps the IVT", u32(16, 0x8000f410)},
		{"boot data misaligned", "not word-aligned", u32(16, 0x8000f422)},
		{"plugin", "plugin", u32(0x28, 1)},
		{"no DCD", "no DCD", u32(12, 0)},
		{"DCD outside the header", "DCD pointer", u32(12, 0x8000f400+imxHeaderRoom-2)},
		{"DCD on the boot data", "overlaps the boot data", u32(12, 0x8000f424)},
		{"DCD tag", "DCD tag", set(0x2c, 0xd1)},
		{"DCD version", "DCD version", set(0x2f, 0x50)},
		{"DCD too long for the ROM", "DCD length", be16(0x2d, imxMaxDCD+4)},
		{"DCD shorter than its header", "DCD length", be16(0x2d, 2)},
		{"DCD into the payload", "runs into the payload", func(b []byte) []byte {
			le.PutUint32(b[12:], 0x8000f400+imxHeaderRoom-0x100)
			copy(b[imxHeaderRoom-0x100:], b[0x2c:0x30])
			return b
		}},
		{"CSF pointer 0", "CSF pointer 0", u32(24, 0)},
		{"CSF pointer inside the image", "CSF pointer", add32(24, -0x1000)},
		{"CSF pointer past the file", "CSF pointer", add32(24, 0x200)},
		{"bytes appended after mkimage", "CSF pointer", func(b []byte) []byte { return append(b, make([]byte, 0x1000)...) }},
		{"CSF not 4 KiB aligned", "4 KiB", func(b []byte) []byte {
			b = append(b, make([]byte, 0x200)...)
			return add32(24, 0x200)(b)
		}},
		{"no room for the CSF", "leaves", add32(0x24, -0x4000)},
		{"too little room for the CSF", "leaves", add32(0x24, -0x2200)},
		{"length not whole blocks", "multiple of 512", add32(0x24, 4)},
		{"entry in the header", "entry", u32(4, 0x8000f800)},
		{"entry past the image", "entry", func(b []byte) []byte { return u32(4, 0x8000f400+uint32(len(b)))(b) }},
		{"truncated", "shorter than", func(b []byte) []byte { return b[:imxHeaderRoom-1] }},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := c.mutate(validIMX())
			_, err := checkIMX(img)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrIMXLayout) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want one about %q", err, c.want)
			}
		})
	}
}

// The synthetic layout above is mkimage's: mkimage, when installed, makes an
// image from a payload with the same configuration lines as tamago's USB
// armory one, and checkIMX accepts it with the values testIMX would write.
func TestSyntheticImageMatchesMkimage(t *testing.T) {
	mkimage, err := exec.LookPath("mkimage")
	if err != nil {
		t.Skip("mkimage not installed (u-boot-tools); the real image is checked by make imx")
	}
	dir := t.TempDir()
	payload := bytes.Repeat([]byte{1, 2, 3, 4, 5}, 4000)
	cfg := "IMAGE_VERSION 2\nBOOT_FROM sd\nCSF 0x4000\n"
	for i := 0; i < 120; i++ {
		cfg += fmt.Sprintf("DATA 4 %#08x 0xffffffff\n", 0x020c4068+4*i)
	}
	must(t, os.WriteFile(filepath.Join(dir, "cfg"), []byte(cfg), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "payload.bin"), payload, 0o644))
	cmd := exec.Command(mkimage, "-n", "cfg", "-T", "imximage", "-e", "0x80010000", "-d", "payload.bin", "out.imx")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out.imx"))
	must(t, err)
	if _, err := checkIMX(got); err != nil {
		t.Fatalf("mkimage's image refused: %v", err)
	}
	want := testIMX(0x8000f000, 0x80010000, payload, 120)
	if !bytes.Equal(got, want) {
		for i := range got {
			if i >= len(want) || got[i] != want[i] {
				t.Fatalf("mkimage's image (%d bytes) and testIMX's (%d) differ first at %#x", len(got), len(want), i)
			}
		}
		t.Fatalf("mkimage's image is %d bytes, testIMX's %d", len(got), len(want))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// armELF links a small program for 32-bit ARM the way the firmware is
// linked (-T text address, -R 0x1000): Go's linker puts the ELF and program
// headers and its notes in the first loadable segment, one page below .text.
func armELF(t *testing.T) *elf.File {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to link a test ELF")
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"coffer\") }\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.22\n"), 0o644))
	out := filepath.Join(dir, "x.elf")
	cmd := exec.Command(goCmd, "build", "-trimpath", "-ldflags", "-T 0x80010000 -R 0x1000", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm", "GOARM=7", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// The flat image starts at .text, the link address mkimage is given (-e
// OS_TEXT) and the address the payload is loaded at, not at the headers
// the linker put a page below it: otherwise every byte would run 4 KiB away
// from where it was linked. (Before this, fwimage bin started at the first
// segment's address, 0x8000f000, and the real image failed check-imx.)
func TestFlatStartsAtTextNotAtTheHeaders(t *testing.T) {
	f := armELF(t)
	text := f.Section(".text")
	if text == nil || text.Addr != 0x80010000 {
		t.Fatalf(".text at %#x, want the -T address 0x80010000", text.Addr)
	}
	var first uint64 = 1 << 63
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Paddr < first {
			first = p.Paddr
		}
	}
	if first >= text.Addr {
		t.Fatalf("first segment at %#x: the linker no longer puts headers below .text; this test needs another ELF", first)
	}
	b, lo, err := flat(f)
	must(t, err)
	if lo != text.Addr {
		t.Fatalf("flat image starts at %#x, want .text's %#x", lo, text.Addr)
	}
	code, err := text.Data()
	must(t, err)
	if !bytes.Equal(b[:len(code)], code) {
		t.Fatal("the flat image does not begin with .text")
	}
	for _, name := range []string{".rodata", ".data", ".noptrdata"} {
		s := f.Section(name)
		if s == nil {
			continue
		}
		d, err := s.Data()
		must(t, err)
		if off := s.Addr - lo; !bytes.Equal(b[off:off+uint64(len(d))], d) {
			t.Fatalf("%s is not at its address in the flat image", name)
		}
	}
}

func TestCheckIMXMatchesELF(t *testing.T) {
	f := armELF(t)
	b, lo, err := flat(f)
	must(t, err)
	img := testIMX(uint32(lo)-imxInitLoad, uint32(f.Entry), b, 10)
	l, err := checkIMX(img)
	must(t, err)
	must(t, checkIMXMatchesELF(img, l, f))

	for name, mutate := range map[string]func([]byte){
		"payload byte":     func(i []byte) { i[imxHeaderRoom+len(b)/2] ^= 1 },
		"padding not zero": func(i []byte) { i[len(i)-1] = 1 },
		"entry":            func(i []byte) { binary.LittleEndian.PutUint32(i[4:], uint32(f.Entry)+4) },
	} {
		bad := append([]byte(nil), img...)
		mutate(bad)
		l, err := checkIMX(bad)
		if err == nil {
			err = checkIMXMatchesELF(bad, l, f)
		}
		if err == nil {
			t.Errorf("%s changed: accepted", name)
		}
	}
	// Payload one page off: what the old fwimage bin produced.
	shifted := testIMX(uint32(lo)-imxInitLoad-0x1000, uint32(f.Entry), b, 10)
	if l, err := checkIMX(shifted); err != nil {
		t.Fatal(err)
	} else if err := checkIMXMatchesELF(shifted, l, f); err == nil {
		t.Error("a payload loaded one page below the ELF's address was accepted")
	}
}

// FuzzCheckIMX: any bytes either get an error or a layout whose promises
// hold, checked here again from the raw bytes.
func FuzzCheckIMX(f *testing.F) {
	f.Add(testIMX(0x8000f000, 0x80011000, make([]byte, 0x200), 120))
	f.Add(testIMX(0x8000f000, 0x80010000, []byte{1}, 1))
	f.Add(testIMX(0xfffff000, 0x80010000, make([]byte, 0x100), 2))
	f.Add(make([]byte, imxHeaderRoom))
	f.Fuzz(func(t *testing.T, img []byte) {
		l, err := checkIMX(img)
		if err != nil {
			if l != nil || !errors.Is(err, ErrIMXLayout) {
				t.Fatalf("error %v with layout %v", err, l)
			}
			return
		}
		le := binary.LittleEndian
		if img[0] != imxTagIVT || le.Uint32(img[20:]) != l.Self || uint64(l.CSF) != uint64(l.Self)+uint64(len(img)) {
			t.Fatalf("accepted an IVT that does not point its CSF at the file's end: %+v", l)
		}
		if uint64(l.Start)+uint64(l.Length) < uint64(l.CSF)+imxMinCSFRoom || l.Plugin != 0 {
			t.Fatalf("accepted boot data without CSF room: %+v", l)
		}
		d := int(l.DCD - l.Self)
		if d+l.DCDLen > imxHeaderRoom || img[d] != imxTagDCD {
			t.Fatalf("accepted a DCD outside the header: %+v", l)
		}
	})
}
