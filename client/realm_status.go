package client

import (
	"context"
)

// SetStatus is what `coffer realms` shows (REALMS.md 13.3): per realm its
// reachability, state, versions, tries left and failures since the last
// success; for the set whether it is recoverable, its tolerance, the tries
// left, the bounds, the set code and the warnings of section 4.
type SetStatus struct {
	Realms []RealmReport
	// Recoverable: a version this device may use is held live by at least
	// t realms; VersionErr says why not.
	Recoverable  bool
	VersionErr   error
	ManifestHash []byte
	// Tolerance is how many realms the key survives the loss of: holders
	// of the version minus t (C5); -1 when not recoverable.
	Tolerance int
	TriesLeft uint // across the realms (12.5)
	Bounds    *RealmBounds
	SetCode   string
	Warnings  []RealmWarning
}

// Probe asks every realm for its signed state, in parallel, counting
// nothing (type 16), and finds the version a recovery would use.
func (s *RealmSet) Probe(ctx context.Context) (*SetStatus, error) {
	before := map[*realm]*RealmReceiptInfo{}
	for _, r := range s.realms {
		if r.entry.LastReceipt != nil {
			li := *r.entry.LastReceipt
			before[r] = &li
		}
	}
	if err := s.probeAll(ctx); err != nil {
		return nil, err
	}
	st := &SetStatus{Tolerance: -1, SetCode: s.rc.SetCode(), Warnings: s.rc.Warnings(nil)}
	st.Bounds, _ = s.Bounds(0)
	ag, err := s.agree(ctx)
	st.VersionErr = err
	if ag != nil {
		st.Recoverable, st.ManifestHash = true, ag.hash
		st.Tolerance = len(ag.holders) - s.threshold()
		var left []uint
		for _, r := range ag.holders {
			left = append(left, r.probe.TriesLeft)
		}
		st.TriesLeft = TriesAcross(s.threshold(), left)
	}
	st.Realms = s.reports(ag, nil, before)
	return st, nil
}
