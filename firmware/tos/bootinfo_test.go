package tos

import (
	"bytes"
	"errors"
	"testing"
)

func testBootInfo() *BootInfo {
	return &BootInfo{OSHash: [32]byte{1, 2, 3}, Release: 42, ReleaseKey: ReleaseKeyID{9, 8, 7}}
}

func TestBootInfoRoundTrip(t *testing.T) {
	b := testBootInfo()
	enc := b.Marshal()
	got, err := ParseBootInfo(enc[:])
	if err != nil || *got != *b {
		t.Fatalf("%+v, %v", got, err)
	}
}

// RAM without a bootloader's block is "no boot info"; a block with the magic
// but anything else wrong (a flipped bit, a torn write) is an error of its
// own, which the OS refuses service on, never "no boot info" (which would
// quietly fall back to the unchecked identity).
func TestBootInfoDamagedIsNotAbsent(t *testing.T) {
	for _, mem := range [][]byte{make([]byte, BootInfoSize), bytes.Repeat([]byte{0xff}, 4096), nil} {
		if _, err := ParseBootInfo(mem); !errors.Is(err, ErrNoBootInfo) {
			t.Fatalf("blank memory: %v", err)
		}
	}
	enc := testBootInfo().Marshal()
	for i := 8; i < BootInfoSize; i++ {
		bad := enc
		bad[i] ^= 0x10
		if b, err := ParseBootInfo(bad[:]); err == nil || errors.Is(err, ErrNoBootInfo) {
			t.Fatalf("byte %d flipped: %+v, %v", i, b, err)
		}
	}
}
