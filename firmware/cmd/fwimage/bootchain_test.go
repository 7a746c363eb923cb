package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhsm/coffer/board/usbarmory"
	"github.com/cofferhsm/coffer/firmware/bootcheck"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// The dev proof verifies under the TEST policy, for the image's hash; the
// boot area reads back.
func TestDevProofAndBootArea(t *testing.T) {
	dir := t.TempDir()
	elfPath, proofPath := filepath.Join(dir, "os.elf"), filepath.Join(dir, "os.proof")
	img := []byte("\x7fELF not really, but hashed all the same")
	if err := os.WriteFile(elfPath, img, 0o600); err != nil {
		t.Fatal(err)
	}
	td := "../../qemutest/testdata"
	if err := devProof(td, "qemu", elfPath, proofPath); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(filepath.Join(td, "boot-policy-TEST-ONLY.txt"))
	pol, err := releaselog.ParsePolicy(text)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(proofPath)
	res, err := bootcheck.Check(pol, "qemu", img, b, 1)
	if err != nil || res.Info.Release != 1 {
		t.Fatalf("dev proof: %v", err)
	}
	area := filepath.Join(dir, "area.img")
	if err := bootArea(elfPath, proofPath, area); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(area)
	a, err := usbarmory.ParseBootArea(got[:usbarmory.SectorSize])
	if err != nil || int(a.ImageLen) != len(img) || int(a.ProofLen) != len(b) {
		t.Fatalf("boot area header %+v, %v", a, err)
	}
}
