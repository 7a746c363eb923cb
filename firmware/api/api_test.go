package api

import (
	"bytes"
	"testing"
)

func TestConfigRoundTrip(t *testing.T) {
	c := &Config{
		Flags: FlagInsecure | FlagEmulated | FlagDevProvisioning, MaxLimit: 10,
		Sectors: 65536, MinAnchorMillis: 100, Boot: 3, Board: "qemu-mcimx6ul-evk",
	}
	c.StoreKey[0], c.FirmwareHash[1], c.DevProvisioningSeed[2] = 1, 2, 3
	b := c.Encode()
	if len(b) != ConfigSize {
		t.Fatalf("encoded %d bytes", len(b))
	}
	got, err := DecodeConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *c {
		t.Fatalf("got %+v, want %+v", got, c)
	}
	got.Wipe()
	if got.StoreKey != ([32]byte{}) || got.DevProvisioningSeed != ([32]byte{}) {
		t.Fatal("Wipe left keys")
	}
}

func TestConfigRejects(t *testing.T) {
	good := (&Config{Flags: FlagInsecure, Board: "x"}).Encode()
	cases := map[string]func([]byte) []byte{
		"short":         func(b []byte) []byte { return b[:ConfigSize-1] },
		"magic":         func(b []byte) []byte { b[0] ^= 1; return b },
		"version":       func(b []byte) []byte { b[7]++; return b },
		"unknown flag":  func(b []byte) []byte { b[11] |= 0x80; return b },
		"dev not insec": func(b []byte) []byte { b[11] = FlagDevProvisioning; return b },
		"name garbage":  func(b []byte) []byte { b[150] = 'z'; return b },
		"reserved":      func(b []byte) []byte { b[200] = 1; return b },
	}
	for name, f := range cases {
		if _, err := DecodeConfig(f(bytes.Clone(good))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSectorCallLen(t *testing.T) {
	for n, want := range map[int]int{
		SectorHeader + SectorSize: 1, MaxSectorCall: MaxSectors,
		SectorHeader: -1, SectorHeader + SectorSize + 1: -1, MaxSectorCall + SectorSize: -1, 0: -1,
	} {
		k, err := SectorCallLen(n)
		if (want < 0) != (err != nil) || (want > 0 && k != want) {
			t.Errorf("SectorCallLen(%d) = %d, %v; want %d", n, k, err, want)
		}
	}
	if MaxMessage > MaxBuffer {
		t.Fatal("a message does not fit the largest buffer")
	}
}
