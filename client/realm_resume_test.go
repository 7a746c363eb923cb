package client

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
)

// resumeVector is protocol/testdata/realms/schedule/resume, written by
// gen_vectors.py independently of this code: the body's encoding, the key
// and the sealed blob with its fixed nonce must come out the same.
func resumeVector(t *testing.T) *vectorfile.Case {
	t.Helper()
	for _, c := range vectorfile.Load(t, realmVectorDir) {
		if c.Path == "schedule/resume" {
			return &c
		}
	}
	t.Fatal("no schedule/resume vector")
	return nil
}

func hexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResumeBlobVector(t *testing.T) {
	v := resumeVector(t)
	k, vid, hash := v.Hex(t, "backup-key"), v.Hex(t, "version-id"), v.Hex(t, "manifest-hash")
	key, err := resumeKey(k, vid)
	if err != nil || !bytes.Equal(key, v.Hex(t, "resume-key")) {
		t.Fatalf("resume key %x (%v)", key, err)
	}
	blob := v.Data
	body, err := OpenResume(blob, k, vid, hash)
	if err != nil {
		t.Fatalf("the vector's blob does not open: %v", err)
	}
	if len(body.Materials) != 3 || body.Materials[2].Index != 3 {
		t.Fatalf("body %+v", body)
	}
	enc, _ := evidenceEnc.Marshal(body)
	if !bytes.Equal(enc, v.Hex(t, "resume-body")) {
		t.Fatalf("the body encodes as %x", enc)
	}
	again, err := SealResume(bytes.NewReader(blob[:24]), k, vid, body)
	if err != nil || !bytes.Equal(again, blob) {
		t.Fatalf("sealed with the vector's nonce: %x (%v)", again, err)
	}
	// Another key, another version, another manifest hash or one flipped
	// bit: the blob does not open, and the error says so.
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	for name, try := range map[string]func() error{
		"another key":      func() error { _, err := OpenResume(blob, flip(k, 0), vid, hash); return err },
		"another version":  func() error { _, err := OpenResume(blob, k, flip(vid, 0), hash); return err },
		"another manifest": func() error { _, err := OpenResume(blob, k, vid, flip(hash, 31)); return err },
		"a flipped bit":    func() error { _, err := OpenResume(flip(blob, 40), k, vid, hash); return err },
		"truncated":        func() error { _, err := OpenResume(blob[:30], k, vid, hash); return err },
	} {
		if err := try(); !errors.Is(err, ErrBadResume) || !strings.Contains(err.Error(), "does not open") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
