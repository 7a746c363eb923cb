package vault

import (
	"fmt"

	"github.com/cofferhsm/coffer/protocol"
)

// keyRealm namespaces realm records (REALMS.md, section 8) apart from the
// single vault's user records: one user id may have both, and neither can
// name the other.
const keyRealm = 'r'

func realmKey(userID []byte) []byte { return append([]byte{keyRealm}, userID...) }

// realmRecord is what a realm keeps per account: one counter shared by at
// most two versions, one pending and one committed. A tombstone keeps the
// totals and the versions' names, never a share or an unlock key.
//
// As for the single vault's record, the counter is Attempts − Watermark;
// Attempts only grows (until a delete erases the record) and so does
// Watermark.
type realmRecord struct {
	State     recordState     `cbor:"1,keyasint"`
	Limit     uint            `cbor:"2,keyasint"`
	Attempts  uint64          `cbor:"3,keyasint"`
	Watermark uint64          `cbor:"4,keyasint"`
	Successes uint64          `cbor:"5,keyasint"`
	Versions  []storedVersion `cbor:"6,keyasint"`
}

// storedVersion is one version of a realm record. Limit is the version's L
// from its manifest: a realm stores the manifest's hash, not the manifest,
// and a commit must still know the limit it sets (V4).
type storedVersion struct {
	VersionID    []byte                 `cbor:"1,keyasint"`
	Status       protocol.VersionStatus `cbor:"2,keyasint"`
	Index        uint                   `cbor:"3,keyasint"`
	Share        []byte                 `cbor:"4,keyasint,omitempty"`
	UnlockKey    []byte                 `cbor:"5,keyasint,omitempty"`
	ManifestHash []byte                 `cbor:"6,keyasint"`
	Origin       protocol.VersionOrigin `cbor:"7,keyasint"`
	Limit        uint                   `cbor:"8,keyasint"`
}

func (r *realmRecord) counter() uint64 { return r.Attempts - r.Watermark }

func (r *realmRecord) triesLeft() uint {
	if c := r.counter(); c < uint64(r.Limit) {
		return r.Limit - uint(c)
	}
	return 0
}

func (r *realmRecord) live() bool { return r.State == stateLive }

// held returns the version named id, or nil.
func (r *realmRecord) held(id []byte) *storedVersion {
	for i := range r.Versions {
		if string(r.Versions[i].VersionID) == string(id) {
			return &r.Versions[i]
		}
	}
	return nil
}

// holds reports whether the record holds exactly the version a ticket or a
// session was made for: the same id and the same manifest. A version id is
// the client's choice, so the id alone could name a stranger's version.
func (r *realmRecord) holds(id, manifestHash []byte) *storedVersion {
	if sv := r.held(id); sv != nil && string(sv.ManifestHash) == string(manifestHash) {
		return sv
	}
	return nil
}

func (r *realmRecord) pending() *storedVersion {
	for i := range r.Versions {
		if r.Versions[i].Status == protocol.VersionPending {
			return &r.Versions[i]
		}
	}
	return nil
}

// tombstone is what remains of r once its secrets are erased: state,
// limit, totals and the versions' names.
func (r *realmRecord) tombstone() *realmRecord {
	t := &realmRecord{State: stateLocked, Limit: r.Limit, Attempts: r.Attempts, Watermark: r.Watermark, Successes: r.Successes}
	for _, sv := range r.Versions {
		t.Versions = append(t.Versions, storedVersion{VersionID: bytesCopy(sv.VersionID), Status: sv.Status,
			Index: sv.Index, ManifestHash: bytesCopy(sv.ManifestHash), Origin: sv.Origin, Limit: sv.Limit})
	}
	return t
}

// sameVersions reports whether r and o name the same versions in the same
// states: a final ticket revives only the tombstone its own count made.
func (r *realmRecord) sameVersions(o *realmRecord) bool {
	if len(r.Versions) != len(o.Versions) {
		return false
	}
	for i := range r.Versions {
		a, b := &r.Versions[i], &o.Versions[i]
		if string(a.VersionID) != string(b.VersionID) || string(a.ManifestHash) != string(b.ManifestHash) || a.Status != b.Status {
			return false
		}
	}
	return true
}

func (r *realmRecord) clone() *realmRecord {
	c := *r
	c.Versions = make([]storedVersion, len(r.Versions))
	for i, sv := range r.Versions {
		c.Versions[i] = sv
		c.Versions[i].VersionID = bytesCopy(sv.VersionID)
		c.Versions[i].ManifestHash = bytesCopy(sv.ManifestHash)
		c.Versions[i].Share = bytesCopy(sv.Share)
		c.Versions[i].UnlockKey = bytesCopy(sv.UnlockKey)
	}
	return &c
}

func (r *realmRecord) wipe() {
	if r == nil {
		return
	}
	for i := range r.Versions {
		clear(r.Versions[i].Share)
		clear(r.Versions[i].UnlockKey)
	}
}

func bytesCopy(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func (r *realmRecord) marshal() ([]byte, error) {
	b, err := recordEnc.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("vault: realm record of %d bytes exceeds %d", len(b), MaxRecordSize)
	}
	return b, nil
}

// parseRealmRecord decodes a stored realm record. The store authenticated
// the bytes, so a failure is a bug or a format change; it is checked all the
// same, since every rule of section 9 leans on these invariants.
func parseRealmRecord(b []byte) (*realmRecord, error) {
	var r realmRecord
	if err := recordDec.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("vault: stored realm record does not decode: %w", err)
	}
	if err := r.check(); err != nil {
		r.wipe()
		return nil, err
	}
	return &r, nil
}

func (r *realmRecord) check() error {
	if r.State != stateLive && r.State != stateLocked {
		return fmt.Errorf("vault: stored realm record has state %d", r.State)
	}
	if r.Watermark > r.Attempts {
		return fmt.Errorf("vault: stored realm record's watermark is past its attempts")
	}
	if r.Limit < protocol.MinLimit || r.Limit > protocol.MaxLimitCeiling {
		return fmt.Errorf("vault: stored realm record has limit %d", r.Limit)
	}
	if r.live() && r.counter() >= uint64(r.Limit) {
		return fmt.Errorf("vault: stored realm record is live at its limit")
	}
	if len(r.Versions) < 1 || len(r.Versions) > protocol.RealmVersionsSlots {
		return fmt.Errorf("vault: stored realm record has %d versions", len(r.Versions))
	}
	var pending, committed int
	for i, sv := range r.Versions {
		switch sv.Status {
		case protocol.VersionPending:
			pending++
		case protocol.VersionCommitted:
			committed++
		default:
			return fmt.Errorf("vault: stored realm version has status %d", sv.Status)
		}
		if len(sv.VersionID) != protocol.VersionIDSize || len(sv.ManifestHash) != protocol.HashSize ||
			sv.Index < 1 || sv.Index > protocol.MaxRealms || sv.Origin < protocol.OriginSession ||
			sv.Origin > protocol.OriginOverBurned || sv.Limit < protocol.MinLimit || sv.Limit > protocol.MaxLimitCeiling {
			return fmt.Errorf("vault: stored realm version is malformed")
		}
		if r.live() != (len(sv.Share) == protocol.ScalarSize && len(sv.UnlockKey) == protocol.UnlockKeySize) ||
			(!r.live() && len(sv.Share)+len(sv.UnlockKey) != 0) {
			return fmt.Errorf("vault: stored realm version's secrets do not match the record's state")
		}
		if i == 1 && string(sv.VersionID) == string(r.Versions[0].VersionID) {
			return fmt.Errorf("vault: stored realm record holds one version twice")
		}
	}
	if pending > 1 || committed > 1 {
		return fmt.Errorf("vault: stored realm record holds two versions in one state")
	}
	return nil
}
