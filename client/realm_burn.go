package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// ErrBurnDeclined is a burn the user did not confirm: nothing was sent.
var ErrBurnDeclined = errors.New("client: the burn was not confirmed; nothing was evaluated")

// BurnedVersion is one version a burn found at the realm, with the counts
// rule 2 of REALMS.md 13.3 took from this run's signed probes.
type BurnedVersion struct {
	VersionID    []byte
	ManifestHash []byte
	Sequence     uint64
	Threshold    int // t_V, from its manifest
	Listed       int // realms its manifest lists
	// Holders are the listed realms counted as holding it: those whose
	// signed probe shows it live, and every one that did not answer or is
	// not in this configuration.
	Holders []string
}

// BurnReport is what a burn did (REALMS.md 13.3, "Burning a stale record").
type BurnReport struct {
	Realm    string
	Versions []BurnedVersion
	// Evaluations are the counted evaluations with random inputs this run
	// sent, each answered by a signed attempt receipt.
	Evaluations uint
	// AttemptsBefore and AttemptsAfter are the realm's signed totals of
	// counted evaluations on this account, from this run's probe and from
	// the last receipt.
	AttemptsBefore, AttemptsAfter uint64
	// Locked: the realm's last signed receipt shows the record burned
	// (tombstone), so an open registration is accepted there again (V1).
	Locked bool
	// Forgotten: the burned version was this device's own first
	// registration, cut before t realms held it, and no realm holds it any
	// more: the configuration no longer names it, so the key can be
	// registered again (Register, `coffer init --realms`).
	Forgotten bool
}

// Summary is what the CLI says after a burn.
func (b *BurnReport) Summary() string {
	var s string
	if b.Evaluations == 0 && b.Locked {
		s = fmt.Sprintf("realm %s was already burned: nothing was evaluated", QuoteName(b.Realm))
	} else {
		s = fmt.Sprintf("realm %s: %s with random inputs (its signed count of evaluations on this account went from %d to %d)",
			QuoteName(b.Realm), Plural(b.Evaluations, "counted evaluation"), b.AttemptsBefore, b.AttemptsAfter)
		if b.Locked {
			s += "; its record is burned and takes an open registration again"
		} else {
			s += "; its record is NOT burned yet"
		}
	}
	if b.Forgotten {
		s += "; the unfinished first registration is held nowhere any more and this configuration forgets it: no backup is made to it; register again (remove this configuration, then `coffer init --realms FILE`)"
	}
	return s
}

// Burn clears a stale record at the realm named realmName: a live record
// that holds only versions no password the user knows can open there
// (REALMS.md 13.3, rules 1-4). Every version the realm holds must pass:
//
//  1. its manifest is known (configuration, else a host) and has the hash
//     the realm signed;
//  2. this run's signed probes show it held by fewer than t_V of the realms
//     its manifest lists, every listed realm that did not answer or is not
//     in this configuration counting as a holder;
//  3. it is not a version the pinned anchor signed with a sequence at or
//     above the pinned version's (the user's current version, or a newer
//     one another device made: finish it, never burn it), except this
//     device's own first registration whose commit was never sent (no
//     backup was made to it, and rule 2 shows it can never open) and,
//     while this device deletes the key, the pinned version itself (the
//     user asked for it to be erased);
//  4. confirm, given a sentence naming the realm, the versions and the cost
//     (up to L counted evaluations there), returns true.
//
// Then it sends evaluations with random inputs, each counted by the realm,
// until a signed receipt shows the record locked, and spends every ticket
// with a random tag so that no final ticket can revive it (N4). The
// configuration is updated in place (pins, receipts); the caller saves it.
func (s *RealmSet) Burn(ctx context.Context, realmName string, confirm func(what string) bool) (*BurnReport, error) {
	var r *realm
	for _, x := range s.realms {
		if x.entry.Name == realmName {
			r = x
		}
	}
	if r == nil {
		return nil, fmt.Errorf("client: no realm %s in this configuration", QuoteName(realmName))
	}
	if err := s.probeAll(ctx); err != nil {
		return nil, err
	}
	if r.down != nil {
		return nil, fmt.Errorf("client: realm %s cannot be reached, so nothing can be burned there: %w", r.name(), r.down)
	}
	rep := &BurnReport{Realm: r.entry.Name, AttemptsBefore: uint64(r.probe.AttemptsTotal), AttemptsAfter: uint64(r.probe.AttemptsTotal)}
	switch r.probe.State {
	case protocol.RealmNoRecord:
		return nil, fmt.Errorf("client: realm %s holds no record for this account: nothing to burn", r.name())
	case protocol.RealmLocked:
		rep.Locked = true
		return rep, nil
	}
	var held []protocol.VersionState
	for _, v := range r.probe.Versions {
		if v.Status != protocol.VersionEmpty {
			held = append(held, v)
		}
	}
	if len(held) == 0 {
		return nil, fmt.Errorf("client: realm %s shows a live record with no version: %w", r.name(), ErrBadReceipt)
	}
	var ownRegistration bool
	for _, v := range held {
		bv, own, err := s.mayBurn(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("client: realm %s is not burned: %w", r.name(), err)
		}
		ownRegistration = ownRegistration || own
		rep.Versions = append(rep.Versions, *bv)
	}
	if !confirm(burnQuestion(r, rep)) {
		return nil, ErrBurnDeclined
	}
	err := s.burnAt(ctx, r, held[0].VersionID, rep)
	if rep.Locked && ownRegistration {
		rep.Forgotten = s.forgetRegistration(ctx, rep.Versions)
	}
	return rep, err
}

// mayBurn checks rules 1-3 for one version a realm holds. own says it is
// this device's own first registration whose commit was never sent.
func (s *RealmSet) mayBurn(ctx context.Context, v protocol.VersionState) (*BurnedVersion, bool, error) {
	h := v.ManifestHash
	short := fmt.Sprintf("version %x…", v.VersionID[:4])
	// Rule 1: the manifest, checked by hash and by its anchor's signature.
	manifest, err := s.knownManifest(ctx, h)
	if err != nil {
		return nil, false, fmt.Errorf("the manifest of %s is unknown (%v): without it the realms that hold it cannot be counted", short, err)
	}
	body, err := protocol.ParseManifest(manifest)
	if err != nil {
		return nil, false, fmt.Errorf("the manifest of %s does not parse: %w", short, err)
	}
	if !bytes.Equal(body.VersionID, v.VersionID) {
		return nil, false, fmt.Errorf("the manifest the realm names for %s is another version's", short)
	}
	// Rule 3: never the user's current version or a newer one.
	own := false
	if ch := s.rc.Change; ch != nil && ch.Kind == "register" && !ch.CommitSent && strings.EqualFold(ch.ManifestHash, hex.EncodeToString(h)) {
		own = true // this device's first registration, never committed: no backup was made to it
	}
	deleting := s.rc.Change != nil && s.rc.Change.Kind == "delete"
	if a := s.rc.anchor(); a != nil && !own &&
		(bytes.Equal(body.Anchor, a) || protocol.VerifyHandover(a, body.SetID, body.Anchor, body.Handover)) {
		var pinned uint64
		if s.rc.Version != nil {
			if _, m, err := s.rc.Version.decode(); err == nil {
				if pb, err := protocol.ParseManifest(m); err == nil {
					pinned = pb.Sequence
				}
			}
		}
		// While this device deletes the key, the version it deletes (the
		// pinned one) is the user's to erase; a newer one is not.
		if body.Sequence > pinned || (body.Sequence == pinned && !deleting) {
			return nil, false, fmt.Errorf("%s is your key's (signed by its anchor, sequence %d, this device's is %d): it is your current version or a newer one made on another device; finish it (`coffer password change --resume`), never burn it",
				short, body.Sequence, pinned)
		}
	}
	// Rule 2: held by fewer than t_V of the realms its manifest lists.
	bv := &BurnedVersion{VersionID: v.VersionID, ManifestHash: h, Sequence: body.Sequence, Threshold: int(body.Threshold), Listed: len(body.Realms)}
	for j, key := range body.Realms {
		var match *realm
		for _, x := range s.realms {
			if k := x.entry.signingKey(); k != nil && bytes.Equal(k, key) {
				match = x
			}
		}
		switch {
		case match == nil:
			bv.Holders = append(bv.Holders, fmt.Sprintf("realm %d of its manifest (not in this configuration)", j+1))
		case match.probe == nil || match.down != nil:
			bv.Holders = append(bv.Holders, match.entry.Name+" (did not answer)")
		case match.probe.State == protocol.RealmLive && heldBy(match.probe, h) != nil:
			bv.Holders = append(bv.Holders, match.entry.Name)
		}
	}
	if len(bv.Holders) >= bv.Threshold {
		return nil, false, fmt.Errorf("%s may be held by %d of its %d realms (%s), at least its threshold %d: it may still open, so it is not stale",
			short, len(bv.Holders), bv.Listed, strings.Join(bv.Holders, ", "), bv.Threshold)
	}
	return bv, own, nil
}

// knownManifest is the manifest with hash h from the configuration (the
// set's version, the change's and its old version) or any host.
func (s *RealmSet) knownManifest(ctx context.Context, h []byte) ([]byte, error) {
	local := []*RealmVersion{s.rc.Version}
	if ch := s.rc.Change; ch != nil {
		local = append(local, ch.Old)
		if ch.Kind != "delete" {
			local = append(local, ch.version())
		}
	}
	for _, v := range local {
		if v == nil {
			continue
		}
		if _, m, err := v.decode(); err == nil && bytes.Equal(protocol.ManifestHash(m), h) {
			return m, nil
		}
	}
	return s.fetchManifest(ctx, h)
}

func burnQuestion(r *realm, rep *BurnReport) string {
	var vs []string
	for _, v := range rep.Versions {
		holders := "none of them"
		if len(v.Holders) > 0 {
			holders = strings.Join(v.Holders, ", ")
		}
		vs = append(vs, fmt.Sprintf("version %x… (sequence %d), which only %d of the %d realms of its manifest may hold (%s), fewer than its threshold %d, so no password opens it",
			v.VersionID[:4], v.Sequence, len(v.Holders), v.Listed, holders, v.Threshold))
	}
	return fmt.Sprintf("Burn realm %s? It holds %s. Burning costs up to %s there (its limit L is %d; %d left), each counted and shown, and leaves its record locked; "+
		"then it takes an open registration again",
		r.name(), strings.Join(vs, "; and "), Plural(r.probe.TriesLeft, "counted evaluation"), r.probe.Limit, r.probe.TriesLeft)
}

// burnAt sends counted evaluations of versionID with random inputs until
// the realm signs that the record is locked. Each ticket is spent at once
// with a random tag (a wrong tag uses it up, N4), the final one included,
// so that nothing can revive the record.
func (s *RealmSet) burnAt(ctx context.Context, r *realm, versionID []byte, rep *BurnReport) error {
	// A realm at most counts to its limit; one more answer shows the lock.
	for range r.probe.TriesLeft + 1 {
		input := make([]byte, 32)
		if _, err := io.ReadFull(s.random, input); err != nil {
			return err
		}
		blind, err := realmkey.NewBlind(input)
		if err != nil {
			return err
		}
		bl := blind.Blinded()
		blind.Wipe()
		var reply protocol.RealmEvaluateReply
		secret, nonce, err := r.call(ctx, protocol.TypeRealmEvaluate, &protocol.RealmEvaluate{VersionID: versionID, Blinded: bl}, &reply)
		if err != nil {
			return fmt.Errorf("client: realm %s stopped answering the burn after %s: %w", r.name(), Plural(rep.Evaluations, "evaluation"), err)
		}
		rc, err := r.receipt(&reply.Receipt, secret.RequestHash, nonce, protocol.RealmReceiptAttempt, protocol.RealmReceiptLocked)
		secret.Wipe()
		if err != nil {
			return err
		}
		rep.AttemptsAfter = uint64(rc.AttemptsTotal)
		if rc.Kind == protocol.RealmReceiptAttempt {
			rep.Evaluations++
			if len(reply.Handle) == protocol.HandleSize {
				r.randomUnlock(ctx, &ticket{handle: reply.Handle, nonce: reply.TicketNonce})
			}
		}
		if rc.State == protocol.RealmLocked {
			rep.Locked = true
			return nil
		}
	}
	return fmt.Errorf("client: realm %s counted %s and still does not sign its record locked (limit %d): it does not count as it must",
		r.name(), Plural(rep.Evaluations, "evaluation"), r.probe.Limit)
}

// forgetRegistration drops this device's abandoned first registration
// from the configuration once every realm its manifest lists answered in
// this run and none holds it live any more (the burned realm's last
// receipt is its tombstone): nothing can open it, nothing was backed up to
// it, and Register refuses while the configuration names a version. The
// hosts' copies of its manifest and resume blob are deleted.
func (s *RealmSet) forgetRegistration(ctx context.Context, burned []BurnedVersion) bool {
	var h []byte
	for _, v := range burned {
		if ch := s.rc.Change; ch != nil && strings.EqualFold(ch.ManifestHash, hex.EncodeToString(v.ManifestHash)) {
			h = v.ManifestHash
		}
	}
	if h == nil {
		return false
	}
	m, err := s.knownManifest(ctx, h)
	if err != nil {
		return false
	}
	body, err := protocol.ParseManifest(m)
	if err != nil {
		return false
	}
	for _, key := range body.Realms {
		var match *realm
		for _, x := range s.realms {
			if k := x.entry.signingKey(); k != nil && bytes.Equal(k, key) {
				match = x
			}
		}
		if match == nil || match.down != nil || match.last == nil {
			return false
		}
		if match.last.State == protocol.RealmLive && heldBy(match.last, h) != nil {
			return false
		}
	}
	s.rc.SetID, s.rc.Anchor, s.rc.Version, s.rc.Change = "", "", nil, nil
	parallel(s.realms, func(r *realm) {
		if r.conn != nil && r.id != nil {
			r.conn.DeleteBlob(ctx, h)
			r.conn.DeleteManifest(ctx, h)
		}
	})
	return true
}

// RegisterAfterBurn gives a burned (or empty) realm of the set the user's
// current password, by open registration (V1): a repair onto the same set
// (13.3), which first finishes any unfinished change it can (C6), then
// makes a new version with the same password, key, set id and anchor and
// puts it at every realm, registering openly where a realm is burned or
// empty, and commits it under C2.
func (s *RealmSet) RegisterAfterBurn(ctx context.Context, password []byte) (*ChangeReport, error) {
	var same []*RealmEntry
	for _, e := range s.rc.Set {
		same = append(same, &RealmEntry{Name: e.Name})
	}
	return s.Repair(ctx, password, same, s.rc.Threshold, 0)
}
