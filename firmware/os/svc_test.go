package main

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestSVCImmediate(t *testing.T) {
	const base = 0x98000000
	mem := make([]byte, 64)
	binary.LittleEndian.PutUint32(mem[0:], 0xef000000)  // svc 0
	binary.LittleEndian.PutUint32(mem[4:], 0xef123456)  // svc 0x123456
	binary.LittleEndian.PutUint32(mem[8:], 0xe10f0070)  // hlt 0xf000
	binary.LittleEndian.PutUint32(mem[12:], 0xff123456) // cond 0b1111: not an SVC
	binary.LittleEndian.PutUint16(mem[16:], 0xdfab)     // Thumb svc 0xab
	binary.LittleEndian.PutUint16(mem[18:], 0xdf00)     // Thumb svc 0
	binary.LittleEndian.PutUint32(mem[60:], 0x1f000000) // svc 0, condition NE
	for _, c := range []struct {
		ret   uint32
		thumb bool
		imm   uint32
		ok    bool
	}{
		{base + 4, false, 0, true},
		{base + 8, false, 0x123456, true},
		{base + 12, false, 0, false},
		{base + 16, false, 0, false},
		{base + 18, true, 0xab, true},
		{base + 20, true, 0, true},
		{base + 64, false, 0, true},
		{base + 68, false, 0, false}, // past the region
		{base + 2, false, 0, false},  // before it
		{base, true, 0, false},
		{2, false, 0, false},
	} {
		imm, ok := svcImmediate(mem, base, c.ret, c.thumb)
		if ok != c.ok || (ok && imm != c.imm) {
			t.Errorf("return address %#x (thumb %v): %#x %v, want %#x %v", c.ret, c.thumb, imm, ok, c.imm, c.ok)
		}
	}
	if err := refusedSVC(0x123456, true, false, base+4, 1); !strings.Contains(err.Error(), "semihosting") {
		t.Errorf("%v", err)
	}
}
