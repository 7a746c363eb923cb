package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// Errors of a recovery; each is wrapped with details.
var (
	// ErrNoAgreedVersion: no version this device may evaluate is held by t
	// realms (REALMS.md 10, "Which version a recovery uses").
	ErrNoAgreedVersion = errors.New("no version of your key that this device can use is held by enough realms")
	// ErrNoAnchor: a device with no pinned anchor and no set code (5.6).
	ErrNoAnchor = errors.New("this device cannot tell your key's version from one the servers' operators made; " +
		"type the set code (coffer init --realms FILE --existing --set-code CODE) or give one of your backups to check the key against (--backup FILE)")
	// ErrBackupNotOpened: on a device without a pinned anchor, the key a
	// version released does not open the backup given to check it (5.6):
	// not the user's version, or not this account's backup.
	ErrBackupNotOpened = errors.New("the key this version of the realms released does not open the backup given to check it: " +
		"it is not your key (the servers' operators may have made this version), or the backup is not this account's; nothing was pinned or written")
	// ErrCorruptManifest: the password matched the manifest's check value
	// but its wrapped key does not open (5.3): never a wrong password.
	ErrCorruptManifest = errors.New("the password is right but the manifest's wrapped key does not open: the manifest is corrupt")
)

// RealmTries is one realm's count in a message: its name and tries left.
type RealmTries struct {
	Name      string
	TriesLeft uint
}

// WrongPasswordError is a try whose t verified evaluations gave a check
// mismatch (REALMS.md section 14).
type WrongPasswordError struct {
	TriesLeft uint // across the realms (12.5)
	Realms    []RealmTries
}

func (e *WrongPasswordError) Error() string {
	parts := make([]string, len(e.Realms))
	for i, r := range e.Realms {
		parts[i] = fmt.Sprintf("%s %d", QuoteName(r.Name), r.TriesLeft)
	}
	if e.TriesLeft == 0 {
		return fmt.Sprintf("wrong password; no tries left across the realms (%s): fewer than the threshold can still evaluate it", strings.Join(parts, ", "))
	}
	return fmt.Sprintf("wrong password; %s left across the realms (%s)", tries(e.TriesLeft), strings.Join(parts, ", "))
}

// RealmReport is what one realm showed in a recovery or probe (REALMS.md 11,
// step 8).
type RealmReport struct {
	Name      string
	Reachable bool
	Err       error // why it did not serve (nil if it did)
	// State and Versions as its last signed receipt of this run says.
	State    protocol.RealmState
	Versions []protocol.VersionState
	// HoldsAgreed: it holds the version the recovery used.
	HoldsAgreed bool
	Evaluated   bool // one of the evaluations of this try
	Unlocked    bool // a session opened and the unlock was confirmed
	Lying       bool
	Evidence    string // the evidence file, for a lying realm

	TriesLeft          uint
	FailedSinceSuccess uint
	// NotFromThisDevice counts evaluations counted since this device's last
	// receipt from the realm that this device did not ask for (known: it
	// had one).
	NotFromThisDevice uint64
	NotFromThisKnown  bool
}

// Recovery is a successful recovery: K and what the realms showed.
type Recovery struct {
	Key          *BackupKey
	ManifestHash []byte
	Threshold    int
	Realms       []RealmReport
	TriesLeft    uint // across the realms, after this recovery (12.5)
	// Failed is F: the failed evaluations since the last success summed
	// over the realms that answered (11, step 8).
	Failed uint
	// Change is what this recovery did about an unfinished change it
	// found (C6), nil when there was none; ChangeErr why it could not.
	Change    *ChangeReport
	ChangeErr error
}

// Summary is what the CLI shows after a recovery (11, step 8).
func (r *Recovery) Summary() string {
	var b strings.Builder
	for _, rr := range r.Realms {
		switch {
		case rr.Lying:
			fmt.Fprintf(&b, "realm %s: LYING: returned an evaluation that does not match its key share (evidence in %s)\n", QuoteName(rr.Name), QuoteName(rr.Evidence))
		case rr.Err != nil:
			fmt.Fprintf(&b, "realm %s: %v\n", QuoteName(rr.Name), rr.Err)
		default:
			fmt.Fprintf(&b, "realm %s: %s left, %s since the last success", QuoteName(rr.Name), tries(rr.TriesLeft), Plural(rr.FailedSinceSuccess, "failed evaluation"))
			if rr.NotFromThisKnown && rr.NotFromThisDevice > 0 {
				fmt.Fprintf(&b, ", %d not made from this device", rr.NotFromThisDevice)
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "%s left across the realms", tries(r.TriesLeft))
	if r.Failed > 0 {
		fmt.Fprintf(&b, "; up to %s may have been tried (if someone also controlled %s); up to %d if only the servers' operators",
			Plural(r.Failed, "password"), Plural(uint(r.Threshold-1), "realm"), r.Failed/uint(r.Threshold))
	}
	return b.String()
}

// agreed is the version a recovery uses: its manifest, checked, and the
// realms that hold it, by manifest index.
type agreed struct {
	manifest []byte
	hash     []byte
	body     *protocol.ManifestBody
	byIndex  map[uint]*realm // manifest index → configured realm
	shares   map[uint][]byte // manifest index → Y_i
	holders  []*realm        // live realms whose probe shows it at their index
}

func (a *agreed) index(r *realm) uint { return a.body.IndexOf(r.id.SigningKey) }

// Recover opens K with password (REALMS.md section 11): probe every realm,
// agree on the version held by t of them that the pinned anchor signed,
// evaluate one blinding at exactly t realms (falling back one realm at a
// time on failure), verify every answer, and, if the check value matches,
// unwrap K and confirm the unlock at each realm. A lying realm is named and
// its evidence written. The configuration records the version opened.
func (s *RealmSet) Recover(ctx context.Context, password []byte) (*Recovery, error) {
	rec, op, err := s.recoverOpen(ctx, password)
	if err != nil {
		return nil, err
	}
	defer op.wipe()
	if !s.opts.noFinish {
		// Step 7's last part: an unfinished change found with K is carried
		// forward, never left behind (C6).
		rec.Change, _, err = s.finishUnfinished(ctx, op)
		if err != nil {
			rec.ChangeErr = err
		}
	}
	return rec, nil
}

// opened is what a successful recovery leaves for a change: K, the version
// opened and the unlock key of each of its realms.
type opened struct {
	key    []byte
	ag     *agreed
	unlock map[uint][]byte
}

func (o *opened) wipe() {
	clear(o.key)
	for _, k := range o.unlock {
		clear(k)
	}
}

// recoverOpen is Recover without carrying an unfinished change forward: it
// returns the recovery and what a change needs.
func (s *RealmSet) recoverOpen(ctx context.Context, password []byte) (*Recovery, *opened, error) {
	pw, err := NormalizePassword(password)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pw)
	before := map[*realm]*RealmReceiptInfo{}
	for _, r := range s.realms {
		if r.entry.LastReceipt != nil {
			li := *r.entry.LastReceipt
			before[r] = &li
		}
	}
	if err := s.probeAll(ctx); err != nil {
		return nil, nil, err
	}
	ag, err := s.agree(ctx)
	if err != nil {
		return nil, nil, err
	}
	t := int(ag.body.Threshold)
	setID := ag.body.SetID

	// Step 3: the live holders with tries left, most first, ties in
	// configuration order.
	var candidates []*realm
	for _, r := range ag.holders {
		if r.probe.TriesLeft > 0 {
			candidates = append(candidates, r)
		}
	}
	slices.SortStableFunc(candidates, func(a, b *realm) int { return int(b.probe.TriesLeft) - int(a.probe.TriesLeft) })

	input := realmkey.Input(setID, pw)
	defer clear(input)
	blind, err := realmkey.NewBlind(input)
	if err != nil {
		return nil, nil, err
	}
	defer blind.Wipe()
	bl := blind.Blinded()

	// Steps 4 and 5: t at once, then one more per failure.
	results := map[*realm]*evaluation{}
	var good []*realm
	next := 0
	run := func(batch []*realm) {
		got := make([]*evaluation, len(s.realms))
		parallel(batch, func(r *realm) { got[r.pos] = s.evaluate(ctx, r, ag, bl) })
		for _, r := range batch {
			results[r] = got[r.pos]
		}
		for _, r := range batch {
			if results[r].err == nil {
				good = append(good, r)
			}
		}
	}
	first := min(t, len(candidates))
	run(candidates[:first])
	next = first
	for len(good) < t && next < len(candidates) {
		run(candidates[next : next+1])
		next++
	}
	reports := s.reports(ag, results, before)
	if len(good) < t {
		for _, r := range good {
			r.randomUnlock(ctx, results[r].ticket)
		}
		return nil, nil, s.quorumError(ag, results, len(good), "to recover your key")
	}

	// Step 6: combine and check.
	indices := make([]int, t)
	evals := make([][]byte, t)
	for m, r := range good {
		indices[m] = int(ag.index(r))
		evals[m] = results[r].evaluated
	}
	y, err := blind.Finalize(input, indices, evals)
	if err != nil {
		return nil, nil, err
	}
	defer clear(y)
	sch, err := s.schedule(y, ag.body.VersionID, setID)
	if err != nil {
		return nil, nil, err
	}
	defer sch.Wipe()
	if !sch.CheckMatches(ag.body.Check) {
		parallel(good, func(r *realm) { r.randomUnlock(ctx, results[r].ticket) })
		return nil, nil, s.wrongPassword(ag, results)
	}
	key, err := protocol.UnwrapKey(sch.Export[:], setID, ag.body.Wrapped)
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w (%v)", ErrCorruptManifest, err)
	}
	op := &opened{key: key, ag: ag, unlock: map[uint][]byte{}}
	for i, rk := range ag.body.Realms {
		op.unlock[uint(i+1)] = sch.UnlockKey(i+1, rk)
	}
	k, err := BackupKeyFromBytes(key)
	if err != nil {
		op.wipe()
		return nil, nil, err
	}
	if s.rc.anchor() == nil && s.opts.CheckKey != nil {
		// A device that knows no anchor accepts K only once K opened the
		// user's backup (5.6), before any unlock: a version the hosts made
		// for a guess p* then sees random tags, as for a wrong password,
		// and learns nothing of whether p* was right.
		if err := s.opts.CheckKey(k); err != nil {
			parallel(good, func(r *realm) { r.randomUnlock(ctx, results[r].ticket) })
			k.Wipe()
			op.wipe()
			return nil, nil, fmt.Errorf("client: %w (%v)", ErrBackupNotOpened, err)
		}
	}

	// Step 7: unlock where evaluated; challenge and unlock at every other
	// reachable holder, so that its held evaluations are shown and released.
	parallel(ag.holders, func(r *realm) {
		if e := results[r]; e != nil && e.lying {
			return // a lying realm is never used again in this run (section 14)
		}
		unlockKey := sch.UnlockKey(int(ag.index(r)), r.id.SigningKey)
		defer clear(unlockKey)
		tk := (*ticket)(nil)
		if e := results[r]; e != nil && e.err == nil {
			tk = e.ticket
		} else {
			var rc *protocol.RealmReceipt
			var err error
			if tk, rc, err = r.challenge(ctx, protocol.PurposeSession, ag.body.VersionID); err != nil || tk == nil {
				if err == nil {
					err = fmt.Errorf("locked (%q receipt)", RealmReceiptKindName(rc.Kind))
				}
				r.sessionErr = err
				return
			}
		}
		r.sessionErr = r.confirmUnlock(ctx, tk, unlockKey)
	})
	parallel(s.realms, func(r *realm) {
		if r.conn != nil && r.id != nil {
			r.conn.PutManifest(ctx, ag.manifest) // the hosts keep only 4: re-PUT on every recovery (section 7)
		}
	})
	if a := s.rc.anchor(); a != nil && !bytes.Equal(a, ag.body.Anchor) {
		// A version handed over from the pinned anchor (K rotation): its
		// key must derive its anchor before the device follows it.
		if err := s.pinRotated(ag.body.Anchor, k); err != nil {
			op.wipe()
			return nil, nil, err
		}
	}
	s.rc.Version = newRealmVersion(ag.manifest)
	s.learnBounds(ag.body)
	if s.rc.Anchor == "" {
		s.rc.Anchor, s.rc.SetID = hex.EncodeToString(ag.body.Anchor), hex.EncodeToString(setID)
	}
	reports = s.reports(ag, results, before)
	rec := &Recovery{Key: k, ManifestHash: ag.hash, Threshold: t, Realms: reports}
	var left []uint
	for _, rr := range reports {
		if rr.HoldsAgreed && rr.Reachable && !rr.Lying {
			left = append(left, rr.TriesLeft)
		}
		if rr.Reachable {
			rec.Failed += rr.FailedSinceSuccess
		}
	}
	rec.TriesLeft = TriesAcross(t, left)
	return rec, op, nil
}

// learnBounds takes the set's per-realm limit L from the version a
// recovery opened, when no change is under way (a change's own version may
// bring another L): a new device learns the bounds `coffer realms` shows.
// The user's limit is kept when it gives that L; otherwise it becomes the
// bound L spreads to, (n − t + 1)·L (12.3).
func (s *RealmSet) learnBounds(body *protocol.ManifestBody) {
	if s.rc.Change != nil || len(body.Realms) != len(s.rc.Set) {
		return
	}
	spread := uint(len(body.Realms) - int(body.Threshold) + 1)
	s.rc.PerRealm = body.Limit
	if s.rc.Limit/spread != body.Limit {
		s.rc.Limit = body.Limit * spread
	}
}

// evaluation is one realm's answer to this try.
type evaluation struct {
	err       error
	lying     bool
	evidence  string
	ticket    *ticket
	evaluated []byte
	receipt   *protocol.RealmReceipt
}

// evaluate asks one realm for its counted evaluation of bl (type 18) and
// verifies the answer: the receipt (signature, request hash, client nonce,
// kind attempt, version), its evaluation_hash over what arrived, and the
// DLEQ proof against the realm's public share in the agreed manifest. A good
// receipt over a failing proof is a lying realm, and its evidence is saved.
func (s *RealmSet) evaluate(ctx context.Context, r *realm, ag *agreed, bl []byte) *evaluation {
	index := ag.index(r)
	var reply protocol.RealmEvaluateReply
	secret, nonce, err := r.call(ctx, protocol.TypeRealmEvaluate, &protocol.RealmEvaluate{VersionID: ag.body.VersionID, Blinded: bl}, &reply)
	if err != nil {
		return &evaluation{err: err}
	}
	defer secret.Wipe()
	rc, err := r.receipt(&reply.Receipt, secret.RequestHash, nonce, protocol.RealmReceiptAttempt, protocol.RealmReceiptLocked)
	if err != nil {
		return &evaluation{err: err}
	}
	r.probe = rc
	if rc.Kind == protocol.RealmReceiptLocked {
		return &evaluation{err: fmt.Errorf("its record is locked (the limit was reached)"), receipt: rc}
	}
	if !bytes.Equal(rc.VersionID, ag.body.VersionID) || len(reply.Evaluated) == 0 {
		return &evaluation{err: fmt.Errorf("client: %w: an attempt receipt for another version, or no evaluation", ErrBadReceipt), receipt: rc}
	}
	if !bytes.Equal(rc.EvaluationHash, protocol.EvaluationHash(ag.hash, index, bl, reply.Evaluated, reply.Proof, reply.Handle)) {
		return &evaluation{err: fmt.Errorf("client: %w: its evaluation hash does not match the evaluation that arrived", ErrBadReceipt), receipt: rc}
	}
	e := &evaluation{receipt: rc, ticket: &ticket{handle: reply.Handle, nonce: reply.TicketNonce}, evaluated: reply.Evaluated}
	if err := realmkey.VerifyEvaluation(ag.shares[index], bl, reply.Evaluated, reply.Proof); err != nil {
		e.err, e.lying = fmt.Errorf("its evaluation does not match its registered key share: %w", err), true
		ev := &Evidence{Format: EvidenceFormat, ReceiptBody: reply.Receipt.Body, ReceiptSignature: reply.Receipt.Signature,
			Manifest: ag.manifest, Index: index, Blinded: bl, Evaluated: reply.Evaluated, Proof: reply.Proof, Handle: reply.Handle, Identity: r.bundle}
		e.evidence, err = s.saveEvidence(r, ev)
		if err != nil {
			e.err = fmt.Errorf("%w; its evidence could not be saved: %v", e.err, err)
		}
	}
	return e
}

func (s *RealmSet) saveEvidence(r *realm, ev *Evidence) (string, error) {
	b, err := ev.Marshal()
	if err != nil {
		return "", err
	}
	safe := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '_'
	}, r.entry.Name)
	dir := s.opts.EvidenceDir
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "coffer-evidence-"+safe+"-*.cbor")
	if err != nil {
		return "", nameErr(err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", nameErr(err)
	}
	if err := f.Close(); err != nil {
		return "", nameErr(err)
	}
	return filepath.Clean(f.Name()), nil
}

// confirmUnlock opens a session with the ticket and confirms the unlock in
// its first command (rule N5), which also closes it.
func (r *realm) confirmUnlock(ctx context.Context, t *ticket, unlockKey []byte) error {
	sess, err := r.unlock(ctx, t, unlockKey)
	if err != nil {
		return err
	}
	defer sess.wipe()
	_, err = sess.command(ctx, protocol.RealmClose, nil, protocol.RealmReceiptStatus)
	if err == nil {
		r.unlocked = true
	}
	return err
}

// probeAll connects and probes every realm in parallel (11, step 1).
func (s *RealmSet) probeAll(ctx context.Context) error {
	if err := s.connectAll(ctx); err != nil {
		return err
	}
	parallel(s.realms, func(r *realm) {
		if r.down != nil {
			return
		}
		r.probe, r.down = r.doProbe(ctx)
	})
	return nil
}

// agree finds the version a recovery uses (11, step 2; 10, "Which version a
// recovery uses"): among versions held live by at least t realms and signed
// by the pinned anchor (or, on a device with none, by the anchor the set code
// names), the one this device last opened, else the highest sequence. Its
// manifest comes from the configuration or any host and is checked in full.
func (s *RealmSet) agree(ctx context.Context) (*agreed, error) {
	t := s.threshold()
	if w := s.changeBody(); w != nil {
		t = min(t, int(w.Threshold))
	}
	holders := map[string][]*realm{}
	var order []string
	for _, r := range s.realms {
		if r.probe == nil || r.probe.State != protocol.RealmLive {
			continue
		}
		for _, v := range r.probe.Versions {
			if v.Status == protocol.VersionEmpty {
				continue
			}
			h := string(v.ManifestHash)
			if holders[h] == nil {
				order = append(order, h)
			}
			holders[h] = append(holders[h], r)
		}
	}
	var pinned string
	if s.rc.Version != nil {
		h, _, _ := s.rc.Version.decode()
		pinned = string(h)
	}
	var (
		best     *agreed
		found    []*agreed
		notMine  []string
		problems []string
	)
	for _, h := range order {
		if len(holders[h]) < t {
			continue
		}
		ag, err := s.checkVersion(ctx, []byte(h), holders[h])
		if err != nil {
			if errors.Is(err, ErrNoAnchor) {
				return nil, err
			}
			if errors.Is(err, errNotAnchored) {
				notMine = append(notMine, names(holders[h])...)
			} else {
				problems = append(problems, fmt.Sprintf("version %x…: %v", h[:4], err))
			}
			continue
		}
		if len(ag.holders) < int(ag.body.Threshold) {
			problems = append(problems, fmt.Sprintf("version %x… is held at its own index by only %s", h[:4], Plural(uint(len(ag.holders)), "realm")))
			continue
		}
		found = append(found, ag)
	}
	// The one this device last opened, else the highest sequence; with
	// OtherVersion, the best of the others (10, `--other-version`).
	pick := func(skip *agreed) *agreed {
		var b *agreed
		for _, ag := range found {
			switch {
			case ag == skip:
			case string(ag.hash) == pinned:
				return ag
			case b == nil || ag.body.Sequence > b.body.Sequence:
				b = ag
			}
		}
		return b
	}
	best = pick(nil)
	if s.opts.OtherVersion && best != nil {
		if best = pick(best); best == nil {
			problems = append(problems, "no other version of your key is held by enough realms")
		}
	}
	if best == nil {
		var details []string
		if len(notMine) > 0 {
			details = append(details, fmt.Sprintf("a version your key did not make is held at realms %s, and is never evaluated", realmNames(dedupe(notMine))))
		}
		details = append(details, problems...)
		return nil, &NoVersionError{Quorum: s.quorumError(nil, nil, 0, ""), Details: details}
	}
	return best, nil
}

// NoVersionError is a recovery or probe that found no version to use
// (ErrNoAgreedVersion). When realms did not answer, it starts with the
// counts and names each (REALMS.md 14: "2 of 3 realms needed; 1 answered:
// realm B did not answer (…)"); Details say what else was seen.
type NoVersionError struct {
	Quorum  *QuorumError
	Details []string
}

func (e *NoVersionError) Error() string {
	rest := ErrNoAgreedVersion.Error()
	for _, d := range e.Details {
		rest += "; " + d
	}
	if len(e.Quorum.Failures) > 0 {
		return e.Quorum.Error() + "; " + rest
	}
	return fmt.Sprintf("client: %s (%s)", rest, e.Quorum)
}

func (e *NoVersionError) Unwrap() []error { return []error{e.Quorum, ErrNoAgreedVersion} }

var errNotAnchored = errors.New("a version your key did not make")

// checkVersion fetches and checks the manifest with hash h (11, step 2).
func (s *RealmSet) checkVersion(ctx context.Context, h []byte, holders []*realm) (*agreed, error) {
	manifest, err := s.fetchManifest(ctx, h)
	if err != nil {
		return nil, err
	}
	ag, err := s.checkManifest(manifest, h)
	if err != nil {
		return nil, err
	}
	for _, r := range holders {
		v := heldBy(r.probe, h)
		if idx := ag.index(r); idx == 0 || v.Index != idx {
			r.down = fmt.Errorf("it reports the version at index %d, not its place in the manifest", v.Index)
			continue
		}
		ag.holders = append(ag.holders, r)
	}
	return ag, nil
}

// checkManifest checks a manifest that came through a host against the
// configuration (11, step 2): its hash, the anchor's signature and that the
// anchor is the pinned one (or gives the set code), the set id, the
// threshold, every realm a configured one with its pinned account, and every
// commitment and public share a usable element.
func (s *RealmSet) checkManifest(manifest, h []byte) (*agreed, error) {
	if !bytes.Equal(protocol.ManifestHash(manifest), h) {
		return nil, errors.New("its manifest does not have the hash the realms signed")
	}
	body, err := protocol.ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	anchor := s.rc.anchor()
	switch {
	case anchor != nil && !bytes.Equal(body.Anchor, anchor) &&
		!protocol.VerifyHandover(anchor, body.SetID, body.Anchor, body.Handover):
		// Only the pinned anchor's own handover makes another anchor the
		// set's (K rotation, 5.6).
		return nil, errNotAnchored
	case anchor == nil && s.opts.SetCode == "" && s.opts.CheckKey == nil:
		return nil, fmt.Errorf("client: %w", ErrNoAnchor)
	case anchor == nil && s.opts.SetCode != "" && !strings.EqualFold(realmkey.SetCode(body.SetID, body.Anchor), strings.TrimSpace(s.opts.SetCode)):
		return nil, errNotAnchored
	}
	if sid := s.rc.setID(); sid != nil && !bytes.Equal(body.SetID, sid) {
		return nil, errors.New("its set id is not this set's")
	}
	// unpinned are the configured realms never reached (a new device whose
	// realm was down): no identity, so no key to match. Each may stand for
	// one realm of the manifest that no pinned realm matches, as a realm
	// that is down in this run; it is pinned (provisioning key checked)
	// and matched by its key once it answers.
	var unpinned []*realm
	members := 0
	for _, r := range s.realms {
		if !r.retiring {
			members++
			if r.entry.Vault == nil {
				unpinned = append(unpinned, r)
			}
		}
	}
	if anchor == nil {
		// A new device learns the set from its realms file and the user's
		// --threshold: both must be the set's, or the counts of every
		// later rule would be another set's.
		if len(body.Realms) != members {
			return nil, fmt.Errorf("your key's version lists %d realms and this configuration %d: give the realms file of the set", len(body.Realms), members)
		}
		if int(body.Threshold) != s.threshold() {
			return nil, fmt.Errorf("your key's version is %d of %d realms and this configuration says %d: give --threshold %d",
				body.Threshold, len(body.Realms), s.threshold(), body.Threshold)
		}
	}
	if !s.thresholdAllowed(h, int(body.Threshold)) || len(body.Commitments) != int(body.Threshold) {
		return nil, fmt.Errorf("its threshold %d is not the configured %d", body.Threshold, s.threshold())
	}
	ag := &agreed{manifest: manifest, hash: h, body: body, byIndex: map[uint]*realm{}, shares: map[uint][]byte{}}
	for j, key := range body.Realms {
		var match *realm
		for _, r := range s.realms {
			if bytes.Equal(r.entry.signingKey(), key) {
				match = r
			}
		}
		if match == nil && len(unpinned) > 0 && unpinned[0].down != nil {
			match, unpinned = unpinned[0], unpinned[1:]
		} else if match == nil {
			return nil, fmt.Errorf("its realm %d is not a configured realm", j+1)
		} else if match.entry.Account != "" || match.down == nil {
			// (A realm pinned but down before its account was asked has
			// nothing to compare; it is not used in this run.)
			acc, err := match.entry.account()
			if err != nil || !bytes.Equal(acc, body.Accounts[j]) {
				return nil, fmt.Errorf("it names another account at realm %s than the pinned one", match.name())
			}
		}
		y, err := realmkey.PublicShare(body.Commitments, j+1)
		if err != nil {
			return nil, err
		}
		ag.byIndex[uint(j+1)], ag.shares[uint(j+1)] = match, y
	}
	return ag, nil
}

func heldBy(rc *protocol.RealmReceipt, manifestHash []byte) *protocol.VersionState {
	for i := range rc.Versions {
		if rc.Versions[i].Status != protocol.VersionEmpty && bytes.Equal(rc.Versions[i].ManifestHash, manifestHash) {
			return &rc.Versions[i]
		}
	}
	return nil
}

// fetchManifest takes the manifest from the configuration, else from any
// host that serves one with the right hash.
func (s *RealmSet) fetchManifest(ctx context.Context, h []byte) ([]byte, error) {
	if s.rc.Version != nil {
		if vh, m, err := s.rc.Version.decode(); err == nil && bytes.Equal(vh, h) {
			return m, nil
		}
	}
	var errs []string
	for _, r := range s.realms {
		if r.conn == nil || r.id == nil {
			continue
		}
		m, err := r.conn.GetManifest(ctx, h)
		if err == nil {
			return m, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", r.name(), err))
	}
	return nil, fmt.Errorf("no host serves its manifest (%s)", strings.Join(errs, "; "))
}

func names(rs []*realm) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.entry.Name
	}
	return out
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// quorumError names, for every realm not among the answering ones, why.
func (s *RealmSet) quorumError(ag *agreed, results map[*realm]*evaluation, answered int, what string) *QuorumError {
	qe := &QuorumError{Needed: s.threshold(), N: len(s.realms), Answered: answered, What: what}
	for _, r := range s.realms {
		f := RealmFailure{Name: r.entry.Name}
		e := results[r]
		switch {
		case e != nil && e.err == nil:
			continue
		case e != nil:
			f.Err, f.Lying, f.Report = e.err, e.lying, e.evidence
		case r.down != nil:
			f.Err = r.down
		case r.probe != nil && r.probe.State == protocol.RealmLocked:
			f.Err = errors.New("its record was burned: it holds no key")
		case r.probe != nil && r.probe.State == protocol.RealmNoRecord:
			f.Err = errors.New("it holds no key for this account")
		case ag != nil && !slices.Contains(ag.holders, r):
			f.Err = errors.New("it holds another version of your key")
		case r.probe != nil && r.probe.TriesLeft == 0:
			f.Err = errors.New("no tries left there")
		case ag == nil && r.probe != nil:
			if answered == 0 {
				continue // it answered; the version is what is missing
			}
			f.Err = errors.New("it holds another version of your key")
		default:
			f.Err = errors.New("not asked: no other realm was needed")
		}
		qe.Failures = append(qe.Failures, f)
	}
	if ag == nil {
		qe.Answered = 0
		for _, r := range s.realms {
			if r.probe != nil {
				qe.Answered++
			}
		}
	}
	return qe
}

// wrongPassword reports a check mismatch with the tries left (12.5).
func (s *RealmSet) wrongPassword(ag *agreed, results map[*realm]*evaluation) error {
	e := &WrongPasswordError{}
	var left []uint
	for _, r := range ag.holders {
		n := r.probe.TriesLeft
		if ev := results[r]; ev != nil && ev.receipt != nil {
			n = ev.receipt.TriesLeft
		}
		e.Realms = append(e.Realms, RealmTries{Name: r.entry.Name, TriesLeft: n})
		left = append(left, n)
	}
	e.TriesLeft = TriesAcross(s.threshold(), left)
	return e
}

// reports is the per-realm account of this run, in configuration order.
func (s *RealmSet) reports(ag *agreed, results map[*realm]*evaluation, before map[*realm]*RealmReceiptInfo) []RealmReport {
	out := make([]RealmReport, len(s.realms))
	for i, r := range s.realms {
		rr := &out[i]
		rr.Name = r.entry.Name
		rr.Err = r.down
		rr.Reachable = r.probe != nil
		if ag != nil {
			rr.HoldsAgreed = slices.Contains(ag.holders, r)
		}
		if e := results[r]; e != nil {
			rr.Evaluated = e.receipt != nil && e.receipt.Kind == protocol.RealmReceiptAttempt
			rr.Lying, rr.Evidence = e.lying, e.evidence
			if e.err != nil {
				rr.Err = e.err
			}
		}
		if rr.Err == nil && ag != nil && r.probe != nil && !rr.HoldsAgreed {
			switch r.probe.State {
			case protocol.RealmLocked:
				rr.Err = errors.New("its record was burned: it holds no key")
			case protocol.RealmNoRecord:
				rr.Err = errors.New("it holds no key for this account")
			default:
				rr.Err = errors.New("it holds another version of your key")
			}
		}
		if r.sessionErr != nil && rr.Err == nil {
			rr.Err = r.sessionErr
		}
		rr.Unlocked = r.unlocked
		if r.probe != nil {
			// The probe's (or the attempt's) count of failures since the
			// last success, before this recovery's confirmation released
			// them, or the unlocked receipt's if larger: the confirmation
			// released every evaluation counted before its ticket, those
			// made after the probe included. The tries left as the realm's
			// last receipt says.
			rr.State, rr.Versions = r.probe.State, r.probe.Versions
			rr.FailedSinceSuccess = max(r.probe.FailedSinceSuccess, r.released)
			rr.TriesLeft = r.last.TriesLeft
			if r.last.State == protocol.RealmLive {
				rr.State, rr.Versions = r.last.State, r.last.Versions
			}
		}
		if last, b := r.entry.LastReceipt, before[r]; last != nil && b != nil {
			own := uint64(0)
			if rr.Evaluated {
				own = 1
			}
			if last.AttemptsTotal >= b.AttemptsTotal+own {
				rr.NotFromThisDevice, rr.NotFromThisKnown = last.AttemptsTotal-b.AttemptsTotal-own, true
			}
		}
	}
	return out
}
