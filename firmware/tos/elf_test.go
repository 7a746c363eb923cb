package tos

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

type seg struct {
	addr   uint32
	data   []byte
	memsz  uint32
	ptLoad bool
}

// buildELF writes a minimal 32-bit little-endian ARM executable.
func buildELF(entry uint32, machine uint16, segs ...seg) []byte {
	const ehsize, phsize = 52, 32
	le := binary.LittleEndian
	var b bytes.Buffer
	h := make([]byte, ehsize)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 1, 1, 1 // 32-bit, little-endian, version
	le.PutUint16(h[16:], 2)    // ET_EXEC
	le.PutUint16(h[18:], machine)
	le.PutUint32(h[20:], 1)
	le.PutUint32(h[24:], entry)
	le.PutUint32(h[28:], ehsize) // phoff
	le.PutUint16(h[40:], ehsize)
	le.PutUint16(h[42:], phsize)
	le.PutUint16(h[44:], uint16(len(segs)))
	le.PutUint16(h[46:], 40)
	b.Write(h)
	off := uint32(ehsize + phsize*len(segs))
	for _, s := range segs {
		p := make([]byte, phsize)
		typ := uint32(1)
		if !s.ptLoad {
			typ = 4 // PT_NOTE
		}
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], off)
		le.PutUint32(p[8:], s.addr)
		le.PutUint32(p[12:], s.addr)
		le.PutUint32(p[16:], uint32(len(s.data)))
		le.PutUint32(p[20:], s.memsz)
		le.PutUint32(p[24:], 5)
		le.PutUint32(p[28:], 4)
		b.Write(p)
		off += uint32(len(s.data))
	}
	for _, s := range segs {
		b.Write(s.data)
	}
	return b.Bytes()
}

func TestLoadELF(t *testing.T) {
	mem := bytes.Repeat([]byte{0xee}, 0x3000)
	img := Image{Base: 0x1000, Size: 0x3000, Write: func(off uint32, p []byte) { copy(mem[off:], p) }}
	elf := buildELF(0x1010, 40,
		seg{addr: 0x1000, data: []byte("code"), memsz: 4, ptLoad: true},
		seg{addr: 0x2000, data: []byte("data"), memsz: 0x100, ptLoad: true},
		seg{addr: 0x9000, data: []byte("note"), memsz: 4},
	)
	entry, err := LoadELF(elf, img)
	if err != nil {
		t.Fatal(err)
	}
	if entry != 0x1010 {
		t.Fatalf("entry %#x", entry)
	}
	if string(mem[0:4]) != "code" || string(mem[0x1000:0x1004]) != "data" {
		t.Fatal("segments not copied")
	}
	if !bytes.Equal(mem[0x1004:0x1100], make([]byte, 0xfc)) {
		t.Fatal("bss not zeroed")
	}
	if mem[0x1100] != 0xee {
		t.Fatal("wrote past the segment")
	}
}

func TestLoadELFRejects(t *testing.T) {
	img := Image{Base: 0x1000, Size: 0x1000, Write: func(uint32, []byte) { t.Fatal("wrote for a bad image") }}
	for name, c := range map[string]struct {
		elf  []byte
		want string
	}{
		"not arm":        {buildELF(0x1000, 62, seg{0x1000, []byte("x"), 1, true}), "ARM"},
		"below region":   {buildELF(0x1000, 40, seg{0x0800, []byte("x"), 1, true}), "outside"},
		"past region":    {buildELF(0x1000, 40, seg{0x1f00, []byte("x"), 0x200, true}), "outside"},
		"wrapping":       {buildELF(0x1000, 40, seg{0xffffff00, []byte("x"), 0x200, true}), "outside"},
		"entry outside":  {buildELF(0x5000, 40, seg{0x1000, []byte("x"), 1, true}), "entry"},
		"no load":        {buildELF(0x1000, 40, seg{0x1000, []byte("x"), 1, false}), "no loadable"},
		"filesz > memsz": {buildELF(0x1000, 40, seg{0x1000, []byte("xx"), 1, true}), ""},
		"garbage":        {[]byte("not an elf at all, clearly"), ""},
	} {
		_, err := LoadELF(c.elf, img)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
