package witness

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	h := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cp := "origin\n1\nroot\n\n— sig\n"
	good := map[string]uint64{
		"old 0\n\n" + cp:                        0,
		"old 12\n" + h + "\n" + h + "\n\n" + cp: 12,
	}
	for body, old := range good {
		r, err := ParseRequest([]byte(body))
		if err != nil || r.OldSize != old || string(r.Checkpoint) != cp {
			t.Fatalf("%q: %+v, %v", body, r, err)
		}
		if !bytes.Equal(r.Marshal(), []byte(body)) {
			t.Fatalf("%q does not marshal back", body)
		}
	}
	for _, body := range []string{
		"", "old 0", "old 0\n", "old 0\n\n", "old -1\n\n" + cp, "old 01\n\n" + cp, "old  1\n\n" + cp,
		"old 1 \n\n" + cp, "new 1\n\n" + cp, "old 18446744073709551616\n\n" + cp,
		"old 1\nAAAA\n\n" + cp, "old 1\n" + h + "x\n\n" + cp, "old 1\n" + strings.TrimSuffix(h, "=") + "\n\n" + cp,
		"old 1\n" + h + "\n" + cp,
		"old 1\n" + strings.Repeat(h+"\n", MaxProofHashes+1) + "\n" + cp,
		"old 0\n\n" + strings.Repeat("x", MaxRequestSize),
	} {
		if r, err := ParseRequest([]byte(body)); err == nil {
			t.Errorf("accepted %.60q as %+v", body, r)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	h := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for _, s := range []string{
		"old 0\n\norigin\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— o AAAA\n",
		"old 3\n" + h + "\n" + h + "\n\no\n5\nroot\n\n— o sig\n",
		"old 01\n\nx", "old 1\nAAAA\n\nx", "", "old 0", "\n\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			return
		}
		if len(r.Checkpoint) == 0 || len(r.Proof) > MaxProofHashes {
			t.Fatalf("accepted %+v", r)
		}
		for _, p := range r.Proof {
			if len(p) != 32 {
				t.Fatalf("a proof hash of %d bytes", len(p))
			}
		}
		// What parses is exactly what it encodes to.
		if !bytes.Equal(r.Marshal(), body) {
			t.Fatalf("%q parsed but re-encodes as %q", body, r.Marshal())
		}
	})
}
