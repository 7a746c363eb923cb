package store

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cofferhsm/coffer/internal/storage"
)

// The decoders run on data the host can write. Their input is authenticated
// before it is parsed, but they must still never panic, and what they accept
// must re-encode to the same bytes (one encoding per value). Each target
// fixes up the MAC or checksum in front of the parser so that the fuzzer
// reaches it. Run with: go test -fuzz FuzzDecodeNode ./applet/store

func seedNodes() [][]byte {
	k := func(b byte) (x [32]byte) { x[0], x[31] = b, b; return }
	leaf := &node{ents: []entry{{k: k(1), ref: ref{loc: 8, hash: k(2), key: k(3)}}, {k: k(4), ref: ref{loc: 9}}}}
	inner := &node{level: 3, ents: []entry{{k: k(0), ref: ref{loc: 16}}, {k: k(9), ref: ref{loc: 24}}}}
	full := &node{}
	for i := 0; i < MaxEntries; i++ {
		full.ents = append(full.ents, entry{k: k(byte(i + 1)), ref: ref{loc: uint64(i)}})
	}
	return [][]byte{encodeNode(&node{}), encodeNode(leaf), encodeNode(inner), encodeNode(full)}
}

func FuzzDecodeNode(f *testing.F) {
	for _, s := range seedNodes() {
		f.Add(s)
		f.Add(s[:100])
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := make([]byte, nodePlain)
		copy(p, in)
		n, err := decodeNode(p)
		if err != nil {
			if !isTampered(err) {
				t.Fatalf("error does not wrap ErrTampered: %v", err)
			}
			return
		}
		if !bytes.Equal(encodeNode(n), p) {
			t.Fatal("accepted node does not re-encode identically")
		}
		// Sealed and opened at the right level, it is the same node.
		var sid [16]byte
		b, r := sealNode(p, &sid, 64)
		m, err := openNode(b, &r, &sid, n.level)
		if err != nil || !bytes.Equal(encodeNode(m), p) {
			t.Fatalf("seal/open round trip: %v", err)
		}
		if _, err := openNode(b, &r, &sid, n.level+1); err == nil {
			t.Fatal("node opened at the wrong level")
		}
	})
}

func FuzzDecodeSuperblock(f *testing.F) {
	keys := deriveDeviceKeys(&testSealing)
	sb := superblock{storeID: [16]byte{1, 2, 3}, sectors: 4096}
	f.Add(sb.encode(&keys), true)
	f.Add(make([]byte, storage.SectorSize), false)
	f.Add([]byte("CofferStore/v1"), true)
	f.Fuzz(func(t *testing.T, in []byte, fixMAC bool) {
		b := make([]byte, storage.SectorSize)
		copy(b, in)
		if fixMAC {
			m := hmac.New(sha256.New, keys.super[:])
			m.Write(b[:48])
			m.Sum(b[48:48])
		}
		got, err := decodeSuperblock(b, &keys)
		if err != nil {
			return
		}
		if !bytes.Equal(got.encode(&keys), b) {
			t.Fatal("accepted superblock does not re-encode identically")
		}
	})
}

func FuzzDecodeAnchor(f *testing.F) {
	keys := deriveDeviceKeys(&testSealing)
	st := anchorState{storeID: [16]byte{9}, seq: 7, epoch: 2, counter: 6, level: 1,
		root: ref{loc: 8, hash: [32]byte{1}, key: [32]byte{2}}, records: 3}
	enc := st.encode(&keys)
	f.Add(enc[:], false)
	f.Add(make([]byte, anchorPayloadLen), true)
	f.Add(bytes.Repeat([]byte{0xff}, anchorPayloadLen), true)
	f.Fuzz(func(t *testing.T, in []byte, seal bool) {
		var b [storage.AnchorSize]byte
		if seal {
			// Treat the input as the payload and seal it properly, so
			// that the payload parser is reached.
			var p [anchorPayloadLen]byte
			copy(p[:], in)
			copy(b[:], anchorMagic[:])
			aead, _ := chacha20poly1305.NewX(keys.anchor[:])
			aead.Seal(b[anchorHeader:anchorHeader], b[4:anchorHeader], p[:], adAnchor)
		} else {
			copy(b[:], in)
		}
		got, err := decodeAnchor(&b, &keys)
		if err != nil {
			return
		}
		again, err := decodeAnchor(&b, &keys)
		if err != nil || again != got {
			t.Fatal("decoding is not deterministic")
		}
		re := got.encode(&keys)
		if back, err := decodeAnchor(&re, &keys); err != nil || back != got {
			t.Fatalf("re-encoded anchor decodes to %+v, %v", back, err)
		}
	})
}

func FuzzOpenRecord(f *testing.F) {
	f.Add([]byte{0, 5, 'h', 'e', 'l', 'l', 'o'}, uint64(1))
	f.Add([]byte{1, 0xb8}, uint64(0))
	f.Add([]byte{0xff, 0xff}, uint64(1<<63))
	f.Fuzz(func(t *testing.T, plain []byte, version uint64) {
		// Seal an arbitrary plaintext (length field included) the way the
		// store would, and check what openRecord accepts.
		var sid [16]byte
		var idh [32]byte
		p := make([]byte, recordPlain)
		copy(p, plain)
		out := make([]byte, storage.SectorSize)
		copy(out, recordMagic[:])
		putU64(out[4:], version)
		r := ref{loc: 100, key: [32]byte{5}}
		aead, _ := chacha20poly1305.New(r.key[:])
		aead.Seal(out[recordHeader:recordHeader], make([]byte, 12), p, recordAD(&sid, r.loc, &idh, version))
		r.hash = sum(out)
		rec, v, err := openRecord(out, &r, &sid, &idh)
		n := int(binary.BigEndian.Uint16(p))
		valid := n <= MaxRecordSize && isZero(p[2+n:])
		if valid != (err == nil) {
			t.Fatalf("valid=%v err=%v", valid, err)
		}
		if err == nil && (v != version || !bytes.Equal(rec, p[2:2+n])) {
			t.Fatal("wrong record returned")
		}
		// Any other id, slot or a flipped byte is refused.
		other := idh
		other[0] ^= 1
		if _, _, err := openRecord(out, &r, &sid, &other); err == nil {
			t.Fatal("record opened for another id")
		}
	})
}
