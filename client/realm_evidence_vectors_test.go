package client

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// TestRealmEvidenceVectors runs CheckEvidence on the evidence cases of the
// realm vectors (messages/evidence-*, REALMS.md 16 item 5): each case gives
// an evidence file's contents (the signed receipt as its bytes, the manifest
// hash, index, Bl, E_i, π_i and handle; the manifest is messages/manifest),
// which this test puts in the client's file format. evidence-lying must be
// accepted, naming realm 2 and the proof's failure; the three others refused
// as not evidence. (CheckEvidence's error does not say which check refused,
// so the rule is not told apart here; protocol/realmkey's vectors_test.go
// checks each rule with the same calls.)
func TestRealmEvidenceVectors(t *testing.T) {
	cases := vectorfile.Load(t, realmVectorDir)
	var manifest []byte
	for _, c := range cases {
		if c.Path == "messages/manifest" {
			manifest = c.Data
		}
	}
	if manifest == nil {
		t.Fatal("no messages/manifest")
	}
	seen := map[string]int{}
	for _, c := range cases {
		if !strings.HasPrefix(c.Path, "messages/evidence-") {
			continue
		}
		c := c
		seen[c.Expect]++
		t.Run(c.Path, func(t *testing.T) {
			if !bytes.Equal(protocol.ManifestHash(manifest), c.Hex(t, "manifest-hash")) {
				t.Fatalf("the case's manifest hash is not messages/manifest's")
			}
			var sr protocol.SignedRealmReceipt
			if err := protocol.Unmarshal(c.Data, &sr); err != nil {
				t.Fatalf("the receipt does not decode: %v", err)
			}
			ev := Evidence{Format: EvidenceFormat, ReceiptBody: sr.Body, ReceiptSignature: sr.Signature,
				Manifest: manifest, Index: uint(c.Uint(t, "index")), Blinded: c.Hex(t, "blinded"),
				Evaluated: c.Hex(t, "evaluated"), Proof: c.Hex(t, "proof"), Handle: c.Hex(t, "handle")}
			file, err := ev.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			f, err := CheckEvidence(file, nil)
			got := "lying"
			switch {
			case errors.Is(err, ErrNotEvidence):
				got = "not-evidence"
			case err != nil:
				got = "unexpected error: " + err.Error()
			default:
				if !bytes.Equal(f.RealmKey, c.Hex(t, "realm-key")) || !errors.Is(f.Reason, realmkey.ErrProof) {
					t.Errorf("finding: realm %x, reason %v; the vector names realm %s and a failed proof", f.RealmKey, f.Reason, c.Header["realm-key"])
				}
			}
			if got != c.Expect {
				t.Errorf("got %s (%v), the vector expects %s: %v", got, err, c.Expect, c.Comments)
			}
		})
	}
	if seen["lying"] != 1 || seen["not-evidence"] != 3 {
		t.Errorf("evidence cases %v: want one lying and three not-evidence", seen)
	}
}
