package emulate

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhsm/coffer/internal/storage"
)

var testAuthKey = [32]byte{'r', 'p', 'm', 'b'}

func isTampered(err error) bool {
	var t interface{ Tampered() bool }
	return errors.Is(err, storage.ErrTampered) && errors.As(err, &t) && t.Tampered()
}

// memRPMB is a fresh partition of the given number of blocks with no key
// programmed, and no persistence.
func memRPMB(t testing.TB, blocks int) *RPMBEmulator {
	t.Helper()
	e, err := NewRPMBEmulator(blocks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// memAnchor is an anchor in block 0 of a fresh partition programmed with
// authKey, and the partition.
func memAnchor(t testing.TB, authKey [32]byte) (*storage.RPMBAnchor, *RPMBEmulator) {
	t.Helper()
	m := memRPMB(t, 1)
	a := storage.NewRPMBAnchor(m, authKey, 0)
	if err := a.ProgramKey(); err != nil {
		t.Fatal(err)
	}
	return a, m
}

// swapTransport lets a test put another partition behind an anchor.
type swapTransport struct{ storage.RPMBTransport }

func TestRPMBEmulatorSemantics(t *testing.T) {
	m := memRPMB(t, 2)
	a := storage.NewRPMBAnchor(m, testAuthKey, 1)

	var d [storage.AnchorSize]byte
	d[0] = 1
	if _, _, err := a.Read(); !isRPMBResult(err, storage.RPMBKeyNotProgrammed) {
		t.Fatalf("read before key programming: %v", err)
	}
	if err := a.ProgramKey(); err != nil {
		t.Fatal(err)
	}
	if err := a.ProgramKey(); !isRPMBResult(err, storage.RPMBGeneralFailure) {
		t.Fatalf("second key programming: %v", err)
	}
	got, c, err := a.Read()
	if err != nil || c != 0 || got != [storage.AnchorSize]byte{} {
		t.Fatalf("fresh read: %v %d %v", got[:4], c, err)
	}
	for i := uint32(1); i <= 3; i++ {
		d[1] = byte(i)
		c, err := a.Write(d)
		if err != nil || c != i {
			t.Fatalf("write %d: counter %d, %v", i, c, err)
		}
	}
	got, c, err = a.Read()
	if err != nil || c != 3 || got != d || a.WriteCounter() != 3 {
		t.Fatalf("read back: %v %d %v", got[:4], c, err)
	}

	// A writer without the key is refused and the counter does not move.
	wrong := storage.NewRPMBAnchor(m, [32]byte{9}, 1)
	if _, err := wrong.Write(d); err == nil {
		t.Fatal("write with the wrong key accepted")
	}
	if m.Counter() != 3 {
		t.Fatalf("counter moved to %d on a refused write", m.Counter())
	}
	// A reader with the wrong key sees tampering (MAC mismatch).
	if _, _, err := wrong.Read(); !isTampered(err) {
		t.Fatalf("read with the wrong key: %v", err)
	}

	// A replayed write frame is refused: the counter has moved on.
	var f [storage.RPMBFrameSize]byte
	copy(f[storage.RPMBOffData:], d[:])
	binary.BigEndian.PutUint32(f[storage.RPMBOffCounter:], 2)
	binary.BigEndian.PutUint16(f[storage.RPMBOffAddr:], 1)
	binary.BigEndian.PutUint16(f[storage.RPMBOffCount:], 1)
	binary.BigEndian.PutUint16(f[storage.RPMBOffType:], storage.RPMBReqWrite)
	mac := storage.RPMBMAC(&testAuthKey, f[:])
	copy(f[storage.RPMBOffMAC:], mac[:])
	m.WriteRPMB(f[:], true)
	var resp [storage.RPMBFrameSize]byte
	var rr [storage.RPMBFrameSize]byte
	binary.BigEndian.PutUint16(rr[storage.RPMBOffType:], storage.RPMBReqResult)
	m.WriteRPMB(rr[:], false)
	m.ReadRPMB(resp[:])
	if r := binary.BigEndian.Uint16(resp[storage.RPMBOffResult:]); r != storage.RPMBCounterFailure {
		t.Fatalf("replayed write: result %#x", r)
	}
	// Out-of-range address.
	far := storage.NewRPMBAnchor(m, testAuthKey, 7)
	if _, err := far.Write(d); !isRPMBResult(err, storage.RPMBAddressFailure) {
		t.Fatalf("write out of range: %v", err)
	}
}

func isRPMBResult(err error, r uint16) bool {
	var e *storage.RPMBError
	return errors.As(err, &e) && e.Result&^storage.RPMBCounterExpired == r
}

// replayTransport records responses and can serve an old one instead of
// the device's, as an attacker on the bus (or the host, off hardware) would.
type replayTransport struct {
	storage.RPMBTransport
	saved  [][]byte
	replay []byte
}

func (r *replayTransport) ReadRPMB(f []byte) error {
	if err := r.RPMBTransport.ReadRPMB(f); err != nil {
		return err
	}
	r.saved = append(r.saved, append([]byte(nil), f...))
	if r.replay != nil {
		copy(f, r.replay)
	}
	return nil
}

func TestRPMBResponsesAuthenticated(t *testing.T) {
	_, m := memAnchor(t, testAuthKey)
	tr := &replayTransport{RPMBTransport: m}
	a := storage.NewRPMBAnchor(tr, testAuthKey, 0)
	var d [storage.AnchorSize]byte
	d[0] = 'x'
	a.Write(d)
	if _, _, err := a.Read(); err != nil {
		t.Fatal(err)
	}
	// Replaying a read response (valid MAC, old nonce) is detected.
	tr.replay = tr.saved[len(tr.saved)-1]
	if _, _, err := a.Read(); !isTampered(err) {
		t.Fatalf("replayed read response: %v", err)
	}
	// So is a response with a flipped data bit.
	tr.replay = nil
	a.Read()
	bad := append([]byte(nil), tr.saved[len(tr.saved)-1]...)
	bad[storage.RPMBOffData] ^= 1
	tr.replay = bad
	if _, _, err := a.Read(); !isTampered(err) {
		t.Fatalf("forged read response: %v", err)
	}
	// And a counter that goes backwards between two authenticated reads.
	tr.replay = nil
	sw := &swapTransport{m}
	a2 := storage.NewRPMBAnchor(sw, testAuthKey, 0)
	a2.Write(d)
	old := m.Clone()
	a2.Write(d)
	sw.RPMBTransport = old
	if _, _, err := a2.Read(); !isTampered(err) {
		t.Fatalf("counter went back: %v", err)
	}
}

func TestFileRPMBPersistsAndSurvivesTornSlot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rpmb")
	a, err := OpenFileAnchor(path, testAuthKey)
	if err != nil {
		t.Fatal(err)
	}
	var d [storage.AnchorSize]byte
	for i := 1; i <= 3; i++ {
		d[0] = byte(i)
		if _, err := a.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()

	// A cut while rewriting the first copy leaves the second, and the
	// state is the one before the interrupted write.
	raw, _ := os.ReadFile(path)
	torn := append([]byte(nil), raw...)
	for i := 100; i < 300; i++ {
		torn[i] ^= 0xff
	}
	os.WriteFile(path, torn, 0o600)
	a, err = OpenFileAnchor(path, testAuthKey)
	if err != nil {
		t.Fatal(err)
	}
	got, c, err := a.Read()
	if err != nil || c != 3 || got[0] != 3 {
		t.Fatalf("after torn first copy: %d %d %v", got[0], c, err)
	}
	// The open repaired the damaged copy: both are intact again.
	a.Close()
	raw2, _ := os.ReadFile(path)
	stride := fileRPMBStride(1)
	n := fileRPMBSlotLen(1)
	for i := int64(0); i < 2; i++ {
		if _, err := decodeRPMBState(raw2[i*stride:i*stride+int64(n)], 1); err != nil {
			t.Fatalf("copy %d not repaired: %v", i, err)
		}
	}
	// Both copies damaged: refuse rather than start over.
	os.WriteFile(path, make([]byte, len(raw2)), 0o600)
	if _, err := OpenFileAnchor(path, testAuthKey); err == nil {
		t.Fatal("opened an RPMB file with no valid state")
	}
	// A file anchor opened with another key refuses to read it (MAC).
	os.WriteFile(path, raw2, 0o600)
	b, err := OpenFileAnchor(path, [32]byte{7})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, _, err := b.Read(); !isTampered(err) {
		t.Fatalf("read with another key: %v", err)
	}
}

// TestFileAnchorKeepsNoOldState: after a write returns, the file holds no
// copy of the previous block (it held the previous root key).
func TestFileAnchorKeepsNoOldState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rpmb")
	a, err := OpenFileAnchor(path, testAuthKey)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var d1, d2 [storage.AnchorSize]byte
	for i := range d1 {
		d1[i], d2[i] = 0x11, 0x22
	}
	a.Write(d1)
	a.Write(d2)
	raw, _ := os.ReadFile(path)
	if containsRun(raw, 0x11, 64) {
		t.Fatal("the RPMB file still holds the previous block")
	}
}

func containsRun(b []byte, c byte, n int) bool {
	run := 0
	for _, x := range b {
		if x == c {
			if run++; run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// The emulator with persistence plugged in: every change goes through
// persist first, a failed persist refuses the change, and the last state
// persisted opens again.
func TestRPMBEmulatorPersistence(t *testing.T) {
	var last []byte
	var fail error
	persist := func(st []byte) error {
		if fail != nil {
			return fail
		}
		last = append(last[:0], st...)
		return nil
	}
	e, err := NewRPMBEmulator(1, persist, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := storage.NewRPMBAnchor(e, testAuthKey, 0)
	if err := a.ProgramKey(); err != nil || last == nil {
		t.Fatalf("program key: %v, persisted %d bytes", err, len(last))
	}
	var d1, d2 [storage.AnchorSize]byte
	d1[0], d2[0] = 1, 2
	if c, err := a.Write(d1); err != nil || c != 1 {
		t.Fatalf("write: %d %v", c, err)
	}
	fail = errors.New("medium failed")
	if _, err := a.Write(d2); !isRPMBResult(err, storage.RPMBWriteFailure) {
		t.Fatalf("write with a failing medium: %v", err)
	}
	if got, c, err := a.Read(); err != nil || c != 1 || got != d1 || e.Counter() != 1 {
		t.Fatalf("after a failed persist: %d %d %v", got[0], c, err)
	}
	fail = nil

	e2, err := NewRPMBEmulator(1, nil, last)
	if err != nil {
		t.Fatal(err)
	}
	if got, c, err := storage.NewRPMBAnchor(e2, testAuthKey, 0).Read(); err != nil || c != 1 || got != d1 {
		t.Fatalf("reopened: %d %d %v", got[0], c, err)
	}
	torn := append([]byte(nil), last...)
	torn[len(torn)/2] ^= 1
	for _, c := range []struct {
		blocks int
		state  []byte
	}{{1, torn}, {2, last}, {1, last[:len(last)-1]}, {0, nil}, {1 << 17, nil}} {
		if _, err := NewRPMBEmulator(c.blocks, nil, c.state); err == nil {
			t.Errorf("%d blocks, %d bytes of state: accepted", c.blocks, len(c.state))
		}
	}
}

// OpenRPMBEmulator on any file keeps FileRPMB's format: what it writes,
// OpenFileAnchor reads, and the other way round.
func TestOpenRPMBEmulatorSharesFileFormat(t *testing.T) {
	f := &MemFile{}
	e, err := OpenRPMBEmulator(f, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := f.Size(); n != fileRPMBStride(1)+int64(fileRPMBSlotLen(1)) {
		t.Fatalf("a new partition wrote %d bytes", n)
	}
	a := storage.NewRPMBAnchor(e, testAuthKey, 0)
	if err := a.ProgramKey(); err != nil {
		t.Fatal(err)
	}
	var d [storage.AnchorSize]byte
	d[0] = 7
	if _, err := a.Write(d); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "anchor")
	if err := os.WriteFile(path, f.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	fa, err := OpenFileAnchor(path, testAuthKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, c, err := fa.Read(); err != nil || c != 1 || got != d {
		t.Fatalf("read by OpenFileAnchor: %d %d %v", got[0], c, err)
	}
	d[0] = 8
	if _, err := fa.Write(d); err != nil {
		t.Fatal(err)
	}
	fa.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := OpenRPMBEmulator(NewMemFile(raw), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, c, err := storage.NewRPMBAnchor(e2, testAuthKey, 0).Read(); err != nil || c != 2 || got != d {
		t.Fatalf("read back: %d %d %v", got[0], c, err)
	}
	// Not empty, no valid state: refused, and left as it was.
	junk := NewMemFile([]byte("not an rpmb state"))
	if _, err := OpenRPMBEmulator(junk, 1); err == nil || string(junk.Bytes()) != "not an rpmb state" {
		t.Fatalf("junk file: %v, now %q", err, junk.Bytes())
	}
}

// cutFile is a MemFile that takes only budget more bytes of writes, then
// fails: a power cut in the middle of a write.
type cutFile struct {
	*MemFile
	budget int
}

func (c *cutFile) WriteAt(p []byte, off int64) (int, error) {
	if len(p) > c.budget {
		n, _ := c.MemFile.WriteAt(p[:c.budget], off)
		c.budget = 0
		return n, errors.New("power cut")
	}
	c.budget -= len(p)
	return c.MemFile.WriteAt(p, off)
}

// A partition file written for fewer blocks (the QEMU board's, before it
// grew a block for the boot chain's minimum version) opens as the larger
// partition with the same key, counter and blocks, the new blocks zero; a
// power cut at any byte of the growth loses nothing.
func TestOpenRPMBEmulatorGrowsAnOlderFile(t *testing.T) {
	old := &MemFile{}
	e, err := OpenRPMBEmulator(old, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := storage.NewRPMBAnchor(e, testAuthKey, 0)
	if err := a.ProgramKey(); err != nil {
		t.Fatal(err)
	}
	var d [storage.AnchorSize]byte
	d[0] = 7
	if _, err := a.Write(d); err != nil {
		t.Fatal(err)
	}
	check := func(f RPMBBacking) {
		t.Helper()
		g, err := OpenRPMBEmulator(f, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got, c, err := storage.NewRPMBAnchor(g, testAuthKey, 0).Read(); err != nil || c != 1 || got != d {
			t.Fatalf("block 0 after growing: %d %d %v", got[0], c, err)
		}
		if got, _, err := storage.NewRPMBAnchor(g, testAuthKey, 1).Read(); err != nil || got != ([storage.AnchorSize]byte{}) {
			t.Fatalf("new block 1: %v", err)
		}
	}
	grown := NewMemFile(old.Bytes())
	check(grown)
	check(grown) // and again, now in the new format
	if _, err := OpenRPMBEmulator(NewMemFile(grown.Bytes()), 1); err == nil {
		t.Fatal("a grown file opened as the smaller partition")
	}
	for cut := 0; cut < 2*fileRPMBSlotLen(2); cut += 7 {
		f := &cutFile{MemFile: NewMemFile(old.Bytes()), budget: cut}
		if _, err := OpenRPMBEmulator(f, 2); err == nil {
			t.Fatalf("cut after %d bytes: no error", cut)
		}
		check(NewMemFile(f.Bytes()))
	}
}
