package tos

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
)

// Two release keys' IDs: the device's own, and another log's.
var (
	relA = ReleaseKeyID{0xa}
	relB = ReleaseKeyID{0xb}
)

// provisioned returns a two-block partition with testKey programmed and its
// fuse blown, as the OS leaves it after the first boot.
func provisioned(t *testing.T) (*storetest.MemRPMB, *memFuse) {
	t.Helper()
	part, fuse := storetest.NewMemRPMB(2), &memFuse{}
	if _, err := OpenAnchor(RPMBSetup{Transport: part, Key: testKey, Fuse: fuse, InsecureEmulator: true}); err != nil {
		t.Fatal(err)
	}
	return part, fuse
}

// Before provisioning (fuse not blown, no key) the minimum is 0: the device
// has never run a release. After it, the OS raises the minimum to its own
// version and never lowers it, and the store's anchor block is untouched.
func TestMinVersionRaisedNeverLowered(t *testing.T) {
	blank := storetest.NewMemRPMB(2)
	if v, err := ReadMinVersion(blank, testKey, &memFuse{}, relA); err != nil || v != 0 {
		t.Fatalf("unprovisioned: %d, %v", v, err)
	}
	part, fuse := provisioned(t)
	if v, err := ReadMinVersion(part, testKey, fuse, relA); err != nil || v != 0 {
		t.Fatalf("provisioned, never raised: %d, %v", v, err)
	}
	anchor := part.Block(anchorBlock)
	for _, c := range []struct{ raise, want uint64 }{{5, 5}, {3, 5}, {5, 5}, {9, 9}, {0, 9}} {
		if err := RaiseMinVersion(part, testKey, relA, c.raise); err != nil {
			t.Fatalf("raise to %d: %v", c.raise, err)
		}
		if v, err := ReadMinVersion(part, testKey, fuse, relA); err != nil || v != c.want {
			t.Fatalf("after raising to %d: %d, %v (want %d)", c.raise, v, err, c.want)
		}
	}
	if part.Block(anchorBlock) != anchor {
		t.Fatal("the minimum version overwrote the store's anchor")
	}
}

// An attacker on the eMMC bus cannot lower the minimum: with the fuse blown
// a forged "key not programmed" answer, a replayed old read, a partition
// programmed with another key and a block rewritten without the key all
// refuse (fail closed), never read as a lower minimum.
func TestMinVersionForgedReadsRefused(t *testing.T) {
	part, fuse := provisioned(t)
	if err := RaiseMinVersion(part, testKey, relA, 7); err != nil {
		t.Fatal(err)
	}
	blank := storetest.NewMemRPMB(2)
	if v, err := ReadMinVersion(blank, testKey, fuse, relA); err == nil {
		t.Fatalf("fuse blown, partition without a key: minimum %d, want refused", v)
	}
	other := storetest.NewMemRPMB(2)
	otherKey := [32]byte(bytes.Repeat([]byte{9}, 32))
	if _, err := OpenAnchor(RPMBSetup{Transport: other, Key: otherKey, Fuse: &memFuse{}, InsecureEmulator: true}); err != nil {
		t.Fatal(err)
	}
	if v, err := ReadMinVersion(other, testKey, fuse, relA); err == nil {
		t.Fatalf("partition under another key: minimum %d, want refused", v)
	}
	if v, err := ReadMinVersion(other, testKey, &memFuse{}, relA); err == nil {
		t.Fatalf("fuse not blown, partition under another key: minimum %d, want refused", v)
	}
	// A replayed read response: record one while the minimum is 7, raise
	// to 8, replay it. The nonce does not match.
	rec := &recorder{part: part}
	if v, err := ReadMinVersion(rec, testKey, fuse, relA); err != nil || v != 7 {
		t.Fatal(v, err)
	}
	if err := RaiseMinVersion(part, testKey, relA, 8); err != nil {
		t.Fatal(err)
	}
	replay := &replayer{answers: rec.answers}
	if v, err := ReadMinVersion(replay, testKey, fuse, relA); err == nil {
		t.Fatalf("replayed responses read as minimum %d, want refused", v)
	}
	// A block that is neither blank nor a minimum version (written by
	// someone who opened the chip, or by a future format) is refused, not
	// read as 0, and not overwritten.
	var junk [storage.RPMBBlockSize]byte
	junk[0] = 0xff
	part.SetBlock(minVersionBlock, junk)
	if v, err := ReadMinVersion(part, testKey, fuse, relA); err == nil {
		t.Fatalf("a junk block read as minimum %d", v)
	}
	if err := RaiseMinVersion(part, testKey, relA, 9); err == nil {
		t.Fatal("raised over a junk block")
	}
}

// recorder passes frames to part and keeps every response it read.
type recorder struct {
	part    storage.RPMBTransport
	answers [][]byte
}

func (r *recorder) WriteRPMB(f []byte, rel bool) error { return r.part.WriteRPMB(f, rel) }
func (r *recorder) ReadRPMB(f []byte) error {
	err := r.part.ReadRPMB(f)
	r.answers = append(r.answers, bytes.Clone(f))
	return err
}

// replayer answers with recorded responses, in order.
type replayer struct{ answers [][]byte }

func (r *replayer) WriteRPMB([]byte, bool) error { return nil }
func (r *replayer) ReadRPMB(f []byte) error {
	copy(f, r.answers[0])
	r.answers = r.answers[1:]
	return nil
}

// The minimum belongs to the release key whose OS first wrote it. A
// bootloader of another release key (a rotated log, a TEST policy signed
// by mistake, another operator's log) cannot read it as its own, so it
// boots nothing, and an OS of that key cannot write it: it can neither
// lower the minimum nor claim the block, whatever its version numbers. A
// device another key claimed first is refused by the first key's
// bootloader in turn, never read as 0.
func TestMinVersionBelongsToItsReleaseKey(t *testing.T) {
	part, fuse := provisioned(t)
	if err := RaiseMinVersion(part, testKey, relA, 7); err != nil {
		t.Fatal(err)
	}
	before := part.Block(minVersionBlock)
	if v, err := ReadMinVersion(part, testKey, fuse, relB); !errors.Is(err, ErrForeignReleaseKey) {
		t.Fatalf("release key B's bootloader read release key A's minimum: %d, %v", v, err)
	}
	for _, v := range []uint64{1, 7, 100} {
		if err := RaiseMinVersion(part, testKey, relB, v); !errors.Is(err, ErrForeignReleaseKey) {
			t.Fatalf("an OS under release key B set the minimum to %d: %v", v, err)
		}
	}
	if part.Block(minVersionBlock) != before {
		t.Fatal("release key B's OS wrote the block")
	}
	if err := RaiseMinVersion(part, testKey, relA, 8); err != nil {
		t.Fatal(err)
	}
	if v, err := ReadMinVersion(part, testKey, fuse, relA); err != nil || v != 8 {
		t.Fatalf("release key A after B's attempts: %d, %v", v, err)
	}

	// Claimed by B first (release 3): A's bootloader refuses, it does not
	// start from 0.
	other, ofuse := provisioned(t)
	if err := RaiseMinVersion(other, testKey, relB, 3); err != nil {
		t.Fatal(err)
	}
	if v, err := ReadMinVersion(other, testKey, ofuse, relA); !errors.Is(err, ErrForeignReleaseKey) {
		t.Fatalf("a block release key B owns read by A: %d, %v", v, err)
	}
	// No release key (an OS no bootloader checked) neither reads nor writes.
	if _, err := ReadMinVersion(part, testKey, fuse, ReleaseKeyID{}); err == nil {
		t.Fatal("read for no release key")
	}
	if err := RaiseMinVersion(part, testKey, ReleaseKeyID{}, 9); err == nil {
		t.Fatal("raised for no release key")
	}
	// The first format, without an owner, is refused (anyone could claim
	// it), not read as a minimum.
	var v1 [storage.RPMBBlockSize]byte
	copy(v1[:], "CMINVER1")
	v1[15] = 9
	part.SetBlock(minVersionBlock, v1)
	if v, err := ReadMinVersion(part, testKey, fuse, relA); err == nil {
		t.Fatalf("an ownerless block read as minimum %d", v)
	}
}
