package tos

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/internal/storage"
)

// memFuse is a fake fuse in memory.
type memFuse struct {
	mu    sync.Mutex
	blown bool
	blows int
	fail  error
}

func (f *memFuse) Blown() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blown, f.fail
}

func (f *memFuse) Blow() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.blown = true
	f.blows++
	return nil
}

// wire records the request frames sent to a partition, and what the fuse
// said when each key programming request went out.
type wire struct {
	part          storage.RPMBTransport
	fuse          *memFuse
	frames        [][]byte
	programs      int
	programUnfuse int // key programming requests sent while the fuse was not blown
	failAll       bool
}

func (w *wire) WriteRPMB(f []byte, reliable bool) error {
	w.frames = append(w.frames, bytes.Clone(f))
	if binary.BigEndian.Uint16(f[510:]) == 1 {
		w.programs++
		if b, _ := w.fuse.Blown(); !b {
			w.programUnfuse++
		}
	}
	if w.failAll {
		return errors.New("wire: bus error")
	}
	return w.part.WriteRPMB(f, reliable)
}

func (w *wire) ReadRPMB(f []byte) error {
	if w.failAll {
		return errors.New("wire: bus error")
	}
	return w.part.ReadRPMB(f)
}

func (w *wire) carried(key []byte) bool {
	for _, f := range w.frames {
		if bytes.Contains(f, key) {
			return true
		}
	}
	return false
}

var testKey = [32]byte(bytes.Repeat([]byte{7}, 32))

func isTampered(err error) bool {
	var t interface{ Tampered() bool }
	return errors.As(err, &t) && t.Tampered() && errors.Is(err, storage.ErrTampered)
}

// Provisioning blows the fuse first, then sends the key once; the anchor
// then works, and the next boot sends no key.
func TestProvisioningBlowsTheFuseFirst(t *testing.T) {
	for _, policy := range []RPMBSetup{{SecureBootClosed: true}, {InsecureEmulator: true}} {
		fuse := &memFuse{}
		part := storetest.NewMemRPMB(1)
		w := &wire{part: part, fuse: fuse}
		policy.Transport, policy.Key, policy.Fuse = w, testKey, fuse
		a, err := OpenAnchor(policy)
		if err != nil {
			t.Fatal(err)
		}
		if w.programs != 1 || w.programUnfuse != 0 || fuse.blows != 1 {
			t.Fatalf("%d key programmings, %d before the fuse, %d blows", w.programs, w.programUnfuse, fuse.blows)
		}
		var blk [storage.AnchorSize]byte
		blk[0] = 1
		if c, err := a.Write(blk); err != nil || c != 1 {
			t.Fatalf("write: %d %v", c, err)
		}
		w2 := &wire{part: part, fuse: fuse}
		policy.Transport = w2
		a2, err := OpenAnchor(policy)
		if err != nil {
			t.Fatal(err)
		}
		if got, c, err := a2.Read(); err != nil || got != blk || c != 1 {
			t.Fatalf("read after reboot: %v %d", err, c)
		}
		if w2.programs != 0 || w2.carried(testKey[:]) || fuse.blows != 1 {
			t.Fatal("the second boot sent the key or blew the fuse again")
		}
	}
}

// With the fuse blown, a partition without a key (a blank eMMC swapped in,
// or a forged answer) is tampering: nothing is programmed, the key never
// goes out, and the anchor refuses every call.
func TestFuseBlownNeverProgramsAgain(t *testing.T) {
	fuse := &memFuse{blown: true}
	w := &wire{part: storetest.NewMemRPMB(1), fuse: fuse}
	a, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse, SecureBootClosed: true, InsecureEmulator: true})
	if !isTampered(err) {
		t.Fatalf("OpenAnchor: %v, want tampering", err)
	}
	if w.programs != 0 || w.carried(testKey[:]) {
		t.Fatal("the key went out on the bus")
	}
	if _, _, err := a.Read(); !isTampered(err) {
		t.Fatalf("read: %v", err)
	}
	if _, err := a.Write([storage.AnchorSize]byte{}); !isTampered(err) {
		t.Fatalf("write: %v", err)
	}
}

// Hardware with secure boot open never provisions: the device key is then
// the test key every chip shares.
func TestProvisioningNeedsSecureBootClosed(t *testing.T) {
	fuse := &memFuse{}
	w := &wire{part: storetest.NewMemRPMB(1), fuse: fuse}
	a, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse})
	if err == nil || isTampered(err) {
		t.Fatalf("OpenAnchor: %v, want a refusal to provision", err)
	}
	if fuse.blows != 0 || w.programs != 0 || w.carried(testKey[:]) {
		t.Fatal("provisioned with secure boot open")
	}
	if _, _, err := a.Read(); err == nil {
		t.Fatal("the anchor serves")
	}
}

// A partition already holding this device's key (programmed before the fuse
// was in use) gets the fuse blown, without the key being sent.
func TestFuseBlownForAPartitionAlreadyProgrammed(t *testing.T) {
	_, part := storetest.NewMemAnchor(testKey)
	fuse := &memFuse{}
	w := &wire{part: part, fuse: fuse}
	if _, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse}); err != nil {
		t.Fatal(err)
	}
	if fuse.blows != 1 || w.programs != 0 {
		t.Fatalf("%d blows, %d key programmings", fuse.blows, w.programs)
	}
}

// A partition programmed with another key is refused, fuse or not, and
// nothing is programmed.
func TestPartitionOfAnotherKeyRefused(t *testing.T) {
	for _, blown := range []bool{false, true} {
		_, part := storetest.NewMemAnchor([32]byte{9})
		fuse := &memFuse{blown: blown}
		w := &wire{part: part, fuse: fuse}
		_, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse, SecureBootClosed: true})
		if !isTampered(err) {
			t.Fatalf("fuse %v: %v", blown, err)
		}
		if b, _ := fuse.Blown(); b != blown || w.programs != 0 {
			t.Fatalf("fuse %v: blown %v, %d programmings", blown, b, w.programs)
		}
	}
}

// A fuse that cannot be read or blown stops provisioning before the key is
// sent.
func TestFuseFailureStopsProvisioning(t *testing.T) {
	fuse := &memFuse{fail: errors.New("ocotp: busy")}
	w := &wire{part: storetest.NewMemRPMB(1), fuse: fuse}
	if _, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse, SecureBootClosed: true}); err == nil {
		t.Fatal("provisioned without a fuse")
	}
	if w.programs != 0 {
		t.Fatal("the key went out")
	}
}

// After the check, the first RPMB failure is latched as tampering, even once
// the partition answers again, and the applet sees ETAMPERED.
func TestAnchorLatchesFailures(t *testing.T) {
	fuse := &memFuse{}
	w := &wire{part: storetest.NewMemRPMB(1), fuse: fuse}
	a, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse, InsecureEmulator: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Anchor: a}
	s.Start()
	b := make([]byte, api.AnchorCallSize)
	b[4] = 42
	if r := call(s, api.OpAnchorWrite, b); r != 0 || binary.BigEndian.Uint32(b) != 1 {
		t.Fatalf("write: r0 %d, counter %d", r, binary.BigEndian.Uint32(b))
	}
	r := make([]byte, api.AnchorCallSize)
	if call(s, api.OpAnchorRead, r) != 0 || binary.BigEndian.Uint32(r) != 1 || r[4] != 42 {
		t.Fatalf("read back: %x", r[:8])
	}
	w.failAll = true
	if got := call(s, api.OpAnchorWrite, b); got != int32(api.ETAMPERED) {
		t.Fatalf("write on a failing bus: r0 %d", got)
	}
	w.failAll = false
	if got := call(s, api.OpAnchorRead, r); got != int32(api.ETAMPERED) {
		t.Fatalf("read after the failure: r0 %d", got)
	}
	if !isTampered(a.Err()) {
		t.Fatalf("Err: %v", a.Err())
	}
}

func TestDeriveKeysSeparatesPurposes(t *testing.T) {
	dk := [32]byte{1}
	k := DeriveKeys(&dk, ReleaseKeyID{})
	k2 := DeriveKeys(&[32]byte{2}, ReleaseKeyID{})
	if k.Store == k.RPMB || k.Store == dk || k.RPMB == dk || k.Store == k2.Store || k.RPMB == k2.RPMB {
		t.Fatal("keys not separated")
	}
	if again := DeriveKeys(&dk, ReleaseKeyID{}); again != k {
		t.Fatal("derivation not deterministic")
	}
	k.Wipe()
	if k.Store != ([32]byte{}) || k.RPMB != ([32]byte{}) {
		t.Fatal("Wipe left keys")
	}
}

// An OS signed by another release key must not derive the vault's sealing
// key: the store's key depends on the release key's ID, the RPMB key (which
// the bootloader needs before any OS runs) does not, and an OS no
// bootloader checked (zero ID) derives the original key, not a released one.
func TestStoreKeyBoundToReleaseKey(t *testing.T) {
	dk := [32]byte{7}
	ours := ReleaseKeyID(sha256.Sum256([]byte("coffer.test/log+01234567+AAAA")))
	theirs := ReleaseKeyID(sha256.Sum256([]byte("evil.test/log+89abcdef+BBBB")))
	a, b, none := DeriveKeys(&dk, ours), DeriveKeys(&dk, theirs), DeriveKeys(&dk, ReleaseKeyID{})
	if a.Store == b.Store || a.Store == none.Store || b.Store == none.Store {
		t.Fatal("the store key does not depend on the release key")
	}
	if a.RPMB != b.RPMB || a.RPMB != none.RPMB || a.RPMB != DeriveRPMBKey(&dk) {
		t.Fatal("the RPMB key must be the device's alone")
	}
	// The unchecked derivation is the one from before release keys, so
	// the vaults of directly booted development images still open.
	legacy, err := hkdf.Key(sha256.New, dk[:], nil, "coffer/os store sealing v1", 32)
	if err != nil || [32]byte(legacy) != none.Store {
		t.Fatal("the zero release key ID changed the original store key")
	}
	if again := DeriveKeys(&dk, ours); again != a {
		t.Fatal("not deterministic")
	}
}
