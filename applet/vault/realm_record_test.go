package vault

import (
	"bytes"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// largestRealmRecord is a live record with two versions and every number at
// its widest.
func largestRealmRecord() *realmRecord {
	v := func(b byte, st protocol.VersionStatus) storedVersion {
		return storedVersion{VersionID: bytes.Repeat([]byte{b}, protocol.VersionIDSize), Status: st, Index: protocol.MaxRealms,
			Share: bytes.Repeat([]byte{b}, protocol.ScalarSize), UnlockKey: bytes.Repeat([]byte{b}, protocol.UnlockKeySize),
			ManifestHash: bytes.Repeat([]byte{b}, protocol.HashSize), Origin: protocol.OriginOverBurned, Limit: protocol.MaxLimitCeiling}
	}
	return &realmRecord{State: stateLive, Limit: protocol.MaxLimitCeiling, Attempts: 1<<64 - 1, Watermark: 1<<64 - 2,
		Successes: 1<<64 - 1, Versions: []storedVersion{v(1, protocol.VersionCommitted), v(2, protocol.VersionPending)}}
}

// Section 8's size claim: the largest realm record fits the store's slot,
// and what it encodes to decodes to the same record.
func TestRealmRecordOfTwoVersionsFits(t *testing.T) {
	r := largestRealmRecord()
	b, err := r.marshal()
	if err != nil {
		t.Fatal(err)
	}
	one := &realmRecord{Versions: r.Versions[:1]}
	ob, _ := recordEnc.Marshal(one.Versions[0])
	t.Logf("largest realm record: %d bytes; one version: %d bytes", len(b), len(ob))
	if len(b) > MaxRecordSize {
		t.Fatalf("%d bytes exceed %d", len(b), MaxRecordSize)
	}
	back, err := parseRealmRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.marshal()
	if !bytes.Equal(again, b) {
		t.Fatal("the record does not round-trip")
	}
}
