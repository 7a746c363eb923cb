package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
)

// Repair re-shares the set's key onto a new set of realms (REALMS.md 13.3)
// after recovering it with password: newSet lists the realms of the new
// set in index order (an entry whose name is already configured keeps its
// pins; a new one is pinned on first use, as at init); threshold 0 keeps t
// when it still fits, else ⌊n/2⌋ + 1; limit 0 keeps the user's limit. W is
// made with the same password, K, set id and anchor, put at every realm of
// the new set (open registration where a realm has no record) and
// committed under C2; then the realms only in the old set get a delete in a
// session on the old version, wherever they can be reached. A realm that
// cannot be reached keeps its old share: the report says so and offers key
// rotation, which repair cannot replace.
func (s *RealmSet) Repair(ctx context.Context, password []byte, newSet []*RealmEntry, threshold int, limit uint) (*ChangeReport, error) {
	pw, err := NormalizePassword(password)
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	if len(newSet) < protocol.MinRealms || len(newSet) > protocol.MaxRealms {
		return nil, fmt.Errorf("client: a realm set has %d to %d realms, the new one %d", protocol.MinRealms, protocol.MaxRealms, len(newSet))
	}
	if threshold == 0 {
		threshold = s.threshold()
		if 2*threshold <= len(newSet) || threshold > len(newSet) {
			threshold = DefaultThreshold(len(newSet))
		}
	}
	_, op, err := s.recoverOpen(ctx, password)
	if err != nil {
		return nil, err
	}
	defer op.wipe()
	if limit == 0 {
		limit = s.rc.Limit // after the recovery, which taught a new device the set's
	}
	fin, cur, err := s.finishUnfinished(ctx, op)
	if err != nil {
		return fin, err
	}
	defer cur.wipe()

	// The new set: configured realms keep their entries (and this run's
	// connection); new ones are connected and probed now.
	byName := map[string]*realm{}
	for _, r := range s.realms {
		byName[r.entry.Name] = r
	}
	var members, fresh []*realm
	inNew := map[string]bool{}
	for _, e := range newSet {
		if e == nil || e.Name == "" || inNew[e.Name] {
			return nil, errors.New("client: the new set has an empty, unnamed or repeated realm")
		}
		inNew[e.Name] = true
		if r := byName[e.Name]; r != nil {
			members = append(members, r)
			continue
		}
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("client: realm %s: %w", QuoteName(e.Name), err)
		}
		r := &realm{entry: e, random: s.random}
		members, fresh = append(members, r), append(fresh, r)
	}
	var freshEntries []*RealmEntry
	for _, r := range fresh {
		freshEntries = append(freshEntries, r.entry)
	}
	s.trust.prefetchRealms(ctx, freshEntries, s.opts.HTTPClient, false)
	parallel(fresh, func(r *realm) {
		if r.down = r.connect(ctx, s.opts.HTTPClient, s.trust); r.down == nil {
			r.probe, r.down = r.doProbe(ctx)
		}
	})
	for _, r := range members {
		if r.down != nil && r.entry.Vault == nil {
			return nil, fmt.Errorf("client: new realm %s cannot be reached to pin it: %v", r.name(), r.down)
		}
	}
	var retiring []*realm
	for _, r := range s.realms {
		if !inNew[r.entry.Name] {
			retiring = append(retiring, r)
		}
	}
	if len(members)+len(retiring) > 2*protocol.MaxRealms {
		return nil, errors.New("client: too many realms in the old and new sets together")
	}
	seen := map[string]string{}
	for _, r := range append(append([]*realm{}, members...), retiring...) {
		if k := r.entry.signingKey(); k != nil {
			if o, dup := seen[string(k)]; dup {
				return nil, fmt.Errorf("client: realms %s and %s are the same device (one signing key); refused", QuoteName(o), r.name())
			}
			seen[string(k)] = r.entry.Name
		}
	}
	var in []RealmLimitInput
	for _, r := range members {
		in = append(in, RealmLimitInput{Name: r.entry.Name, MaxLimit: r.entry.Vault.MaxLimit, Insecure: r.entry.Vault.Insecure})
	}
	bounds, err := DeriveRealmBounds(limit, threshold, in, s.allowInsecure())
	if err != nil {
		return nil, err
	}

	// The configuration becomes the new set, with the leaving realms kept
	// until their delete (C1 writes it with the change).
	s.rc.Set, s.rc.Retiring = nil, nil
	s.realms = nil
	for i, r := range members {
		r.pos, r.retiring = i, false
		s.rc.Set = append(s.rc.Set, r.entry)
		s.realms = append(s.realms, r)
	}
	for _, r := range retiring {
		r.pos, r.retiring = len(s.realms), true
		s.rc.Retiring = append(s.rc.Retiring, r.entry)
		s.realms = append(s.realms, r)
	}
	s.rc.Threshold, s.rc.Limit, s.rc.PerRealm = threshold, bounds.Limit, bounds.PerRealm
	w, err := s.makeVersion(cur, pw, op.key, nil, versionPlan{realms: members, threshold: threshold, perRealm: bounds.PerRealm})
	if err != nil {
		return nil, err
	}
	defer w.wipe()
	rep, err := s.startChange(ctx, "repair", cur, w, op.key)
	if rep != nil {
		rep.Notes = append(rep.Notes, repairCannot(s, retiring)...)
	}
	return rep, err
}

// repairCannot says what repair cannot erase (13.3): the old share of a
// leaving realm that was not reached, or that is insecure (its host keeps
// every copy), and offers key rotation.
func repairCannot(s *RealmSet, retiring []*realm) []string {
	var kept []string
	for _, r := range retiring {
		gone := r.last != nil && r.last.State == protocol.RealmNoRecord && r.entry.Deleted != ""
		if !gone || (r.entry.Vault != nil && r.entry.Vault.Insecure) {
			kept = append(kept, r.entry.Name)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	verb := map[bool]string{true: "keeps its", false: "keep their"}[len(kept) == 1]
	return []string{strings.Join([]string{
		fmt.Sprintf("repair cannot erase the old share at %s: %s %s old share and unlock key (a seized, unreachable or insecure realm erases nothing),",
			realmNames(kept), map[bool]string{true: "it", false: "they"}[len(kept) == 1], verb),
		"and anyone who also gets enough realms still holding the old version can test the old password and open the same key;",
		"rotate the key: `coffer key rotate`",
	}, " ")}
}
