package main

import (
	"os"
	"path/filepath"
	"strings"
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

// A boot area built from an OS image and the proof of another (a stale
// proof after a rebuild, or the wrong file) would only be refused at boot,
// on the device: fwimage refuses to write it, naming both hashes.
func TestBootAreaRefusesProofOfAnotherImage(t *testing.T) {
	dir := t.TempDir()
	logged, other := filepath.Join(dir, "logged.elf"), filepath.Join(dir, "other.elf")
	proofPath := filepath.Join(dir, "os.proof")
	if err := os.WriteFile(logged, []byte("\x7fELF the logged release"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte("\x7fELF a rebuild with one byte changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := devProof("../../qemutest/testdata", "usbarmory", logged, proofPath); err != nil {
		t.Fatal(err)
	}
	area := filepath.Join(dir, "area.img")
	err := bootArea(other, proofPath, area)
	if err == nil || !strings.Contains(err.Error(), "does not log") {
		t.Fatalf("boot area for an image its proof does not log: %v", err)
	}
	if _, err := os.Stat(area); !os.IsNotExist(err) {
		t.Fatalf("a boot area was written anyway: %v", err)
	}
	// Bytes that are not a proof at all are refused too.
	if err := os.WriteFile(proofPath, []byte("not a proof"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := bootArea(logged, proofPath, area); err == nil {
		t.Fatal("boot area with a proof that does not parse")
	}
}
