package tos

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/internal/storage"
)

// forger answers every RPMB request with the next fuzzed frame, and records
// what is sent.
type forger struct {
	answers  []byte
	sent     [][]byte
	programs int
}

func (f *forger) WriteRPMB(frame []byte, _ bool) error {
	f.sent = append(f.sent, bytes.Clone(frame))
	if binary.BigEndian.Uint16(frame[storage.RPMBOffType:]) == storage.RPMBReqProgramKey {
		f.programs++
	}
	return nil
}

func (f *forger) ReadRPMB(frame []byte) error {
	clear(frame)
	n := copy(frame, f.answers)
	f.answers = f.answers[n:]
	return nil
}

// Whatever the bus answers, a device whose fuse is blown never sends a key
// programming request nor the key, and its anchor never serves after a
// failed check; with the fuse not blown, a hardware policy (secure boot
// open, not an emulator) never programs either.
func FuzzOpenAnchorForgedAnswers(f *testing.F) {
	notProgrammed := make([]byte, storage.RPMBFrameSize)
	binary.BigEndian.PutUint16(notProgrammed[storage.RPMBOffResult:], storage.RPMBKeyNotProgrammed)
	binary.BigEndian.PutUint16(notProgrammed[storage.RPMBOffType:], storage.RPMBReqCounter<<storage.RPMBRespShift)
	f.Add(notProgrammed, true)
	f.Add(bytes.Repeat(notProgrammed, 4), false)
	f.Add(make([]byte, 3*storage.RPMBFrameSize), true)
	f.Fuzz(func(t *testing.T, answers []byte, blown bool) {
		w := &forger{answers: answers}
		fuse := &memFuse{blown: blown}
		a, err := OpenAnchor(RPMBSetup{Transport: w, Key: testKey, Fuse: fuse})
		if w.programs != 0 {
			t.Fatalf("fuse blown %v, secure boot open: %d key programming requests", blown, w.programs)
		}
		for _, s := range w.sent {
			if bytes.Contains(s, testKey[:]) {
				t.Fatal("the key went out")
			}
		}
		if err != nil {
			if _, _, rerr := a.Read(); rerr == nil {
				t.Fatal("a refused anchor serves")
			}
		}
	})
}

// Any operation and buffer from the applet gets a result, never a panic;
// anchor calls of the wrong size are refused before the anchor is touched.
func FuzzServiceCall(f *testing.F) {
	f.Add(uint32(api.OpAnchorRead), make([]byte, api.AnchorCallSize))
	f.Add(uint32(api.OpAnchorWrite), make([]byte, api.AnchorCallSize))
	f.Add(uint32(api.OpWriteSectors), make([]byte, api.SectorHeader+api.SectorSize))
	f.Add(uint32(api.OpConfig), make([]byte, api.ConfigSize))
	f.Add(uint32(api.OpWait), make([]byte, api.WaitSize))
	f.Fuzz(func(t *testing.T, op uint32, buf []byte) {
		if op == api.OpWait || op == api.OpRecv {
			return // these block for the time the buffer asks
		}
		s, _ := newService()
		before := s.Anchor.(*Anchor).rpmb.WriteCounter()
		s.Start()
		r, _ := s.Call(op, SliceBuffer(buf))
		if (op == api.OpAnchorRead || op == api.OpAnchorWrite) && len(buf) != api.AnchorCallSize {
			if r != int32(api.EINVAL) || s.Anchor.(*Anchor).rpmb.WriteCounter() != before {
				t.Fatalf("anchor call with %d bytes: r0 %d", len(buf), r)
			}
		}
	})
}

// Whatever the bus answers, a device whose fuse is blown never reads a
// minimum version from forged frames (the MAC cannot be forged): it refuses.
// With the fuse not blown, the only forged answer taken is "key not
// programmed", as minimum 0, which is what an unprovisioned device has.
func FuzzReadMinVersionForgedAnswers(f *testing.F) {
	notProgrammed := make([]byte, storage.RPMBFrameSize)
	binary.BigEndian.PutUint16(notProgrammed[storage.RPMBOffResult:], storage.RPMBKeyNotProgrammed)
	binary.BigEndian.PutUint16(notProgrammed[storage.RPMBOffType:], storage.RPMBReqCounter<<storage.RPMBRespShift)
	f.Add(notProgrammed, true)
	f.Add(bytes.Repeat(notProgrammed, 2), false)
	f.Add(make([]byte, 2*storage.RPMBFrameSize), true)
	f.Fuzz(func(t *testing.T, answers []byte, blown bool) {
		v, err := ReadMinVersion(&forger{answers: answers}, testKey, &memFuse{blown: blown}, relA)
		if blown && err == nil {
			t.Fatalf("fuse blown: forged answers read as minimum %d", v)
		}
		if err == nil && v != 0 {
			t.Fatalf("forged answers read as minimum %d", v)
		}
	})
}

// Any block parses or fails without panicking; what parses re-encodes to
// the same bytes (nothing in it is ignored).
func FuzzParseBootInfo(f *testing.F) {
	enc := (&BootInfo{OSHash: [32]byte{1}, Release: 3, ReleaseKey: ReleaseKeyID{2}}).Marshal()
	f.Add(enc[:])
	f.Add(make([]byte, BootInfoSize))
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := ParseBootInfo(p)
		if err != nil {
			return
		}
		if again := b.Marshal(); !bytes.Equal(again[:], p[:BootInfoSize]) {
			t.Fatal("parsed block does not re-encode to itself")
		}
	})
}

// FuzzParseMinVersion: a block parses only as a blank block or exactly as
// encodeMinVersion writes it, with an owner.
func FuzzParseMinVersion(f *testing.F) {
	blk := encodeMinVersion(7, relA)
	f.Add(blk[:])
	f.Add(make([]byte, storage.RPMBBlockSize))
	f.Add([]byte("CMINVER1\x00\x00\x00\x00\x00\x00\x00\x09"))
	f.Fuzz(func(t *testing.T, p []byte) {
		var b [storage.RPMBBlockSize]byte
		copy(b[:], p)
		v, owner, err := parseMinVersion(b)
		switch {
		case err != nil:
		case owner == (ReleaseKeyID{}):
			if b != ([storage.RPMBBlockSize]byte{}) || v != 0 {
				t.Fatalf("an ownerless block parsed as %d", v)
			}
		case encodeMinVersion(v, owner) != b:
			t.Fatal("parsed block does not re-encode to itself")
		}
	})
}
