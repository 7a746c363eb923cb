package emulate

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/cofferhsm/coffer/internal/storage"
)

// The emulator's decoders run on data the host can write: the persisted
// state (a file off hardware) and the request frames. Run with:
// go test -fuzz FuzzRPMBStateFile ./internal/storage/emulate

func FuzzRPMBStateFile(f *testing.F) {
	st := rpmbState{gen: 3, keySet: true, counter: 9, key: [32]byte{1}, blocks: make([][storage.RPMBBlockSize]byte, 1)}
	f.Add(encodeRPMBState(&st))
	f.Add([]byte(fileRPMBMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		b := make([]byte, fileRPMBSlotLen(1))
		copy(b, in)
		s := sha256.Sum256(b[:len(b)-32])
		copy(b[len(b)-32:], s[:])
		got, err := decodeRPMBState(b, 1)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeRPMBState(&got), b) {
			t.Fatal("accepted RPMB state does not re-encode identically")
		}
	})
}

// FuzzRPMBFrames feeds arbitrary request frames to the emulator and
// arbitrary response frames to the anchor client: errors, never panics, and
// never a forged success.
func FuzzRPMBFrames(f *testing.F) {
	var w [storage.RPMBFrameSize]byte
	binary.BigEndian.PutUint16(w[storage.RPMBOffType:], storage.RPMBReqWrite)
	binary.BigEndian.PutUint16(w[storage.RPMBOffCount:], 1)
	f.Add(w[:], true)
	var r [storage.RPMBFrameSize]byte
	binary.BigEndian.PutUint16(r[storage.RPMBOffType:], storage.RPMBReqRead)
	f.Add(r[:], false)
	f.Add([]byte{1, 2, 3}, true)
	f.Fuzz(func(t *testing.T, in []byte, reliable bool) {
		_, m := memAnchor(t, testAuthKey)
		for i := 0; i < len(in); i += storage.RPMBFrameSize {
			var fr [storage.RPMBFrameSize]byte
			copy(fr[:], in[i:])
			m.WriteRPMB(fr[:], reliable)
			var resp [storage.RPMBFrameSize]byte
			m.ReadRPMB(resp[:])
		}
		if m.Counter() != 0 {
			t.Fatal("an unauthenticated frame advanced the counter")
		}
		// The same bytes as responses to a client.
		a := storage.NewRPMBAnchor(&fixedResponses{in}, testAuthKey, 0)
		if _, _, err := a.Read(); err == nil {
			t.Fatal("forged read response accepted")
		}
		if _, err := a.Write([storage.AnchorSize]byte{}); err == nil {
			t.Fatal("forged write response accepted")
		}
	})
}

type fixedResponses struct{ b []byte }

func (f *fixedResponses) WriteRPMB([]byte, bool) error { return nil }
func (f *fixedResponses) ReadRPMB(fr []byte) error {
	clear(fr)
	copy(fr, f.b)
	return nil
}
