package client

import (
	"context"
	"errors"

	"github.com/cofferhsm/coffer/protocol"
)

// Delete erases the set's key (REALMS.md 13.2): it recovers K with
// password, records the delete in the configuration (Checkpoint) before
// anything is erased, then deletes the account's record (V5) in a session at
// every reachable realm that holds one, keeping each signed `deleted`
// receipt (6.3), and deletes the manifests and resume blobs at the hosts.
// The delete is complete against the servers' operators once fewer than t
// realms may hold any version (a realm that did not answer counts), and
// erased everywhere when none does; until then the configuration keeps it
// and says so. When fewer than t realms still hold a version, nothing can
// open a session there any more: Delete then only reports.
func (s *RealmSet) Delete(ctx context.Context, password []byte) (*ChangeReport, error) {
	for _, r := range s.realms {
		r.deleting = true
	}
	_, op, err := s.recoverOpen(ctx, password)
	if err != nil {
		var qe *QuorumError
		if errors.As(err, &qe) {
			// A delete cut short (here or on another device), with fewer
			// than t holders left: nothing can open a session there any
			// more; say where the key may still be.
			if rep := s.deleteReport(nil); rep.Complete {
				if !rep.Erased && s.rc.Change == nil {
					s.rc.Change = &RealmChange{Kind: "delete", State: "delete", Old: s.rc.Version}
				}
				return rep, nil
			}
		}
		return nil, err
	}
	defer op.wipe()
	cur := &known{agreed: op.ag, unlock: op.unlock}
	have := []*known{cur}
	if p, err := s.unfinished(ctx, op); err == nil && p != nil && s.loadResume(ctx, p, op.key) == nil {
		defer p.wipe()
		have = append(have, p)
	}
	if s.rc.Change == nil || s.rc.Change.Kind != "delete" {
		s.rc.Change = &RealmChange{Kind: "delete", State: "delete", Old: s.rc.Version}
	}
	if err := s.checkpoint(); err != nil {
		return nil, err
	}
	errs := make([]error, len(s.realms))
	parallel(s.realms, func(r *realm) {
		if r.down != nil || r.last == nil || r.last.State != protocol.RealmLive {
			return
		}
		errs[r.pos] = s.deleteAt(ctx, r, have)
	})
	hashes := [][]byte{op.ag.hash}
	for _, k := range have[1:] {
		hashes = append(hashes, k.hash)
	}
	parallel(s.realms, func(r *realm) {
		if r.conn == nil || r.id == nil {
			return
		}
		for _, h := range hashes {
			r.conn.DeleteBlob(ctx, h)
			r.conn.DeleteManifest(ctx, h)
		}
	})
	byRealm := map[*realm]error{}
	for _, r := range s.realms {
		if errs[r.pos] != nil {
			byRealm[r] = errs[r.pos]
		}
	}
	return s.deleteReport(byRealm), nil
}

// deleteReport counts, by this run's receipts, the realms that may still
// hold a version: a live record, or no answer.
func (s *RealmSet) deleteReport(errs map[*realm]error) *ChangeReport {
	rep := &ChangeReport{Kind: "delete", Threshold: s.threshold(), OldThreshold: s.threshold(), Tolerance: -1, CommitSent: true}
	for _, r := range s.realms {
		o := ChangeOutcome{Name: r.entry.Name, Reachable: r.down == nil && r.last != nil, Err: errs[r], Retiring: r.retiring}
		if o.Err == nil && r.down != nil {
			o.Err = r.down
		}
		o.MayHoldOld = !o.Reachable || r.last.State == protocol.RealmLive
		if o.MayHoldOld {
			rep.OldHolders = append(rep.OldHolders, o.Name)
		}
		rep.Realms = append(rep.Realms, o)
	}
	rep.Complete = len(rep.OldHolders) < rep.OldThreshold
	rep.Erased = len(rep.OldHolders) == 0
	if rep.Erased {
		// Nothing of the key is left: the configuration keeps the realms
		// and their pins, and may register a new key.
		rep.Done = true
		s.rc.Change, s.rc.Version, s.rc.SetID, s.rc.Anchor, s.rc.Retiring = nil, nil, "", "", nil
	}
	return rep
}

// DeleteStatus says, for a configuration whose delete is unfinished, what
// the user is told at every command (C5).
func (rc *RealmsConfig) DeleteStatus() string {
	if rc.Change == nil || rc.Change.Kind != "delete" {
		return ""
	}
	return "a delete of your key is unfinished: run `coffer delete` again to finish it"
}
