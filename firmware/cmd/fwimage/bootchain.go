package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/board/usbarmory"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// devProof writes a proof bundle for osELF as release 1 of board, in a
// one-entry log signed and cosigned with the TEST keys in dir (the QEMU
// tests' folder), so that `make qemu BOOT=1` can boot through a bootloader
// built with that TEST policy. Nothing real is ever signed with these keys:
// they are public.
func devProof(dir, board, elfPath, out string) error {
	text, err := os.ReadFile(filepath.Join(dir, "boot-policy-TEST-ONLY.txt"))
	if err != nil {
		return err
	}
	pol, err := releaselog.ParsePolicy(text)
	if err != nil {
		return err
	}
	if !strings.Contains(pol.Origin, "TEST-ONLY") {
		return errors.New("dev-proof signs with TEST keys only")
	}
	key := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b)), err
	}
	img, err := os.ReadFile(elfPath)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(img)
	e := &releaselog.Entry{Kind: releaselog.KindRelease, Release: &releaselog.Release{
		Version: 1, Name: "dev", Commit: strings.Repeat("0", 40), Toolchain: "dev",
		Board: board, Firmware: sum[:], Applet: make([]byte, 32),
	}}
	leaf, err := e.Marshal()
	if err != nil {
		return err
	}
	sk, err := key("release-TEST-ONLY.key")
	if err != nil {
		return err
	}
	ls, err := note.NewSigner(sk)
	if err != nil {
		return err
	}
	signers := []note.Signer{ls}
	for i := range pol.Witnesses {
		wk, err := key(fmt.Sprintf("witness-%d-TEST-ONLY.key", i+1))
		if err != nil {
			return err
		}
		ws, err := fnote.NewSignerForCosignatureV1(wk)
		if err != nil {
			return err
		}
		signers = append(signers, ws)
	}
	// A tree of one leaf: its root is the leaf's hash, its inclusion
	// proof empty.
	cp := log.Checkpoint{Origin: pol.Origin, Size: 1, Hash: releaselog.LeafHash(leaf)}
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, signers...)
	if err != nil {
		return err
	}
	pr := &releaselog.Proof{Checkpoint: signed, Index: 0, Entry: leaf}
	if _, _, err := pol.VerifyProof(pr); err != nil {
		return fmt.Errorf("the proof does not verify: %w", err)
	}
	b, err := pr.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}

// bootArea writes the USB armory's eMMC boot area for an OS image and its
// proof (board/usbarmory BootAreaImage). It refuses a proof whose entry is
// not a release of exactly this image: the bootloader would refuse it at
// boot, and a stale proof is easier to see here than on the device. It
// does not verify the proof's signatures (it has no policy); the
// bootloader does.
func bootArea(elfPath, proofPath, out string) error {
	img, err := os.ReadFile(elfPath)
	if err != nil {
		return err
	}
	proof, err := os.ReadFile(proofPath)
	if err != nil {
		return err
	}
	pr, err := releaselog.ParseProof(proof)
	if err != nil {
		return fmt.Errorf("%s: %w", proofPath, err)
	}
	e, err := releaselog.ParseEntry(pr.Entry)
	if err != nil {
		return fmt.Errorf("%s: its entry: %w", proofPath, err)
	}
	sum := sha256.Sum256(img)
	if e.Kind != releaselog.KindRelease || e.Release == nil || !bytes.Equal(e.Release.Firmware, sum[:]) {
		logged := "no release"
		if e.Release != nil {
			logged = fmt.Sprintf("firmware %x", e.Release.Firmware)
		}
		return fmt.Errorf("%s does not log %s (SHA-256 %x): its entry is %s, %s", proofPath, elfPath, sum, e.Kind, logged)
	}
	area, err := usbarmory.BootAreaImage(img, proof)
	if err != nil {
		return err
	}
	return os.WriteFile(out, area, 0o644)
}
