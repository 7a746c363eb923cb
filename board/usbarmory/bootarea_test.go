package usbarmory

import (
	"bytes"
	"testing"
)

func TestBootAreaLayout(t *testing.T) {
	elf, proof := bytes.Repeat([]byte{1}, 1000), bytes.Repeat([]byte{2}, 600)
	img, err := BootAreaImage(elf, proof)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseBootArea(img[:SectorSize])
	if err != nil {
		t.Fatal(err)
	}
	got := img[a.ImageSector()*SectorSize:][:a.ImageLen]
	gotProof := img[a.ProofSector()*SectorSize:][:a.ProofLen]
	if !bytes.Equal(got, elf) || !bytes.Equal(gotProof, proof) || uint64(len(img)) != (a.ProofSector()+a.ProofSectors())*SectorSize {
		t.Fatal("layout does not read back")
	}
	if BootAreaFirstSector+BootAreaSectors > StoreFirstSector {
		t.Fatal("the boot area overlaps the store's window")
	}
	if BootAreaFirstSector*SectorSize < 32<<20 {
		t.Fatal("the boot area leaves less than 32 MiB for the bootloader's .imx")
	}
}

func TestBootAreaHeaderRejects(t *testing.T) {
	good := BootArea{ImageLen: 10, ProofLen: 10}.Marshal()
	for name, mut := range map[string]func([]byte) []byte{
		"short":      func(b []byte) []byte { return b[:100] },
		"magic":      func(b []byte) []byte { b[0] ^= 1; return b },
		"reserved":   func(b []byte) []byte { b[511] = 1; return b },
		"no image":   func(b []byte) []byte { return BootArea{ProofLen: 1}.Marshal() },
		"huge image": func(b []byte) []byte { return BootArea{ImageLen: 1 << 30, ProofLen: 1}.Marshal() },
		"huge proof": func(b []byte) []byte { return BootArea{ImageLen: 1, ProofLen: 1 << 20}.Marshal() },
	} {
		if _, err := ParseBootArea(mut(bytes.Clone(good))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Any sector parses or fails; what parses re-encodes to itself, and its
// lengths are within the bounds the bootloader allocates.
func FuzzParseBootArea(f *testing.F) {
	f.Add(BootArea{ImageLen: 10, ProofLen: 10}.Marshal())
	f.Add(make([]byte, SectorSize))
	f.Fuzz(func(t *testing.T, s []byte) {
		a, err := ParseBootArea(s)
		if err != nil {
			return
		}
		if !bytes.Equal(a.Marshal(), s) {
			t.Fatal("does not re-encode to itself")
		}
	})
}
