package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/vectorfile"
)

// testdata/format holds the on-disk format's vectors, one file per case,
// written from FORMAT.md by gen_format.py (Python's cryptography, not this
// package). This test uses only the format's encoders and decoders, no
// device: FORMAT.md is the authority, and the code must agree with it.
const formatVectorDir = "testdata/format"

// formatOutcome names err as the vector files do.
func formatOutcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, errEmptyAnchor), errors.Is(err, errNoSuperblock):
		return "empty"
	case errors.Is(err, storage.ErrTampered):
		return "tampered"
	}
	return "unexpected error: " + err.Error()
}

func key32(t *testing.T, c *vectorfile.Case, name string) (k [32]byte) {
	t.Helper()
	b := c.Hex(t, name)
	if len(b) != 32 {
		t.Fatalf("%s: %d bytes", name, len(b))
	}
	return [32]byte(b)
}

func storeID(t *testing.T, c *vectorfile.Case) (id [16]byte) {
	t.Helper()
	b := c.Hex(t, "store-id")
	if len(b) != 16 {
		t.Fatalf("store id: %d bytes", len(b))
	}
	return [16]byte(b)
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

// blockRef is the parent entry's reference a node or record case gives.
func blockRef(t *testing.T, c *vectorfile.Case) ref {
	return ref{loc: c.Uint(t, "loc"), hash: key32(t, c, "hash"), key: key32(t, c, "block-key")}
}

// TestFormatVectors walks every case: decoding reaches exactly the case's
// outcome, and a success decodes to the case's fields and encodes from them
// to the case's bytes again.
func TestFormatVectors(t *testing.T) {
	cases := vectorfile.Load(t, formatVectorDir)
	counts := map[string]int{}
	for i := range cases {
		c := &cases[i]
		counts[c.Expect]++
		t.Run(c.Path, func(t *testing.T) {
			var err error
			switch c.Group() {
			case "keys":
				err = checkKeysVector(t, c)
			case "superblock":
				err = checkSuperblockVector(t, c)
			case "anchor":
				err = checkAnchorVector(t, c)
			case "node":
				err = checkNodeVector(t, c)
			case "record":
				err = checkRecordVector(t, c)
			default:
				t.Fatalf("unknown group")
			}
			if got := formatOutcome(err); got != c.Expect {
				t.Errorf("got %s (%v), the vector expects %s: %v", got, err, c.Expect, c.Comments)
			}
		})
	}
	if counts["success"] == 0 || counts["tampered"] == 0 || counts["empty"] == 0 {
		t.Errorf("outcomes %v: the vectors need successes and failures", counts)
	}
}

func checkKeysVector(t *testing.T, c *vectorfile.Case) error {
	sealing := key32(t, c, "sealing-key")
	k := deriveDeviceKeys(&sealing)
	sameBytes(t, "anchor key", k.anchor[:], c.Hex(t, "anchor-key"))
	sameBytes(t, "superblock key", k.super[:], c.Hex(t, "superblock-key"))
	s := &Store{idKey: deriveIDKey(&sealing, storeID(t, c))}
	sameBytes(t, "id key", s.idKey[:], c.Hex(t, "id-key"))
	h := s.hashID(c.Hex(t, "user-id"))
	sameBytes(t, "hashed id", h[:], c.Data)
	return nil
}

func checkSuperblockVector(t *testing.T, c *vectorfile.Case) error {
	sealing := key32(t, c, "sealing-key")
	k := deriveDeviceKeys(&sealing)
	sb, err := decodeSuperblock(c.Data, &k)
	if err != nil {
		return err
	}
	if sb.storeID != storeID(t, c) || sb.sectors != c.Uint(t, "sectors") {
		t.Errorf("decoded %+v", sb)
	}
	sameBytes(t, "encoded again", sb.encode(&k), c.Data)
	return nil
}

func checkAnchorVector(t *testing.T, c *vectorfile.Case) error {
	sealing := key32(t, c, "sealing-key")
	k := deriveDeviceKeys(&sealing)
	if len(c.Data) != storage.AnchorSize {
		t.Fatalf("an anchor of %d bytes", len(c.Data))
	}
	data := [storage.AnchorSize]byte(c.Data)
	a, err := decodeAnchor(&data, &k)
	if err != nil {
		return err
	}
	want := anchorState{storeID: storeID(t, c), seq: c.Uint(t, "sequence"), epoch: c.Uint(t, "epoch"),
		counter: uint32(c.Uint(t, "counter")), level: uint8(c.Uint(t, "root-level")),
		root:    ref{loc: c.Uint(t, "root-loc"), hash: key32(t, c, "root-hash"), key: key32(t, c, "root-key")},
		records: c.Uint(t, "records")}
	if a != want {
		t.Errorf("decoded %+v\nwant %+v", a, want)
	}
	nonce := [24]byte(c.Data[4:28])
	again := a.encodeWithNonce(&k, &nonce)
	sameBytes(t, "encoded again", again[:], c.Data)
	return nil
}

func checkNodeVector(t *testing.T, c *vectorfile.Case) error {
	r, id := blockRef(t, c), storeID(t, c)
	n, err := openNode(c.Data, &r, &id, uint8(c.Uint(t, "level")))
	if err != nil {
		return err
	}
	plain := encodeNode(n)
	sameBytes(t, "plaintext", plain, c.Hex(t, "plaintext"))
	again, r2 := sealNodeUnder(r.key, plain, &id, r.loc)
	sameBytes(t, "sealed again", again, c.Data)
	if r2 != r {
		t.Errorf("ref %+v, want %+v", r2, r)
	}
	return nil
}

func checkRecordVector(t *testing.T, c *vectorfile.Case) error {
	r, id, hid := blockRef(t, c), storeID(t, c), key32(t, c, "hashed-id")
	rec, version, err := openRecord(c.Data, &r, &id, &hid)
	if err != nil {
		return err
	}
	sameBytes(t, "record", rec, c.Hex(t, "record"))
	if version != c.Uint(t, "version") {
		t.Errorf("version %d", version)
	}
	again, r2 := sealRecordUnder(r.key, rec, &id, r.loc, &hid, version)
	sameBytes(t, "sealed again", again, c.Data)
	if r2 != r {
		t.Errorf("ref %+v, want %+v", r2, r)
	}
	return nil
}
