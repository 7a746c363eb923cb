package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// A change (REALMS.md 10 and 13.1) makes a new version W of the set and
// carries it forward, never back: W is put at every realm beside the old
// version (both passwords work), committed only once this run's receipts
// show it at every realm (C2), and the old version is erased realm by realm
// by those commits. Everything needed to finish W is on the device and,
// sealed under K, at every host (C1, 5.7), so any device that recovers K
// finishes it (C6).

// ErrChangeWaits: an unfinished change could not be finished in this run
// (a realm is down or lacks it), so no new change starts from it.
var ErrChangeWaits = errors.New("an unfinished change of your key must be finished first")

// ChangeOutcome is what one realm showed in a change, by this run's
// receipts.
type ChangeOutcome struct {
	Name      string
	Reachable bool
	Holds     bool // the new version held (pending or committed)
	Committed bool // the new version committed, the old erased here
	// MayHoldOld: it may still hold an older version (a realm that did
	// not answer counts as holding one).
	MayHoldOld bool
	Retiring   bool // a realm leaving the set (repair)
	Err        error
}

// ChangeReport is what a change, resume, delete or repair did, and what the
// user is told (C5, section 14).
type ChangeReport struct {
	Kind   string // "change", "repair", "rotate", "delete", "resume"
	Realms []ChangeOutcome
	// CommitSent: the new version's commit was sent (C2 met, or forced).
	CommitSent bool
	Forced     bool
	Threshold  int // t of the new version
	// Tolerance is C5's k: holders of the newest committed version (this
	// run's receipts) minus its t; -1 when none is known.
	Tolerance int
	// OldHolders are the realms that may still hold the old version;
	// Complete when they are fewer than OldThreshold, Erased when none.
	OldHolders   []string
	OldThreshold int
	Complete     bool
	Erased       bool
	// Done: the change is over (the configuration no longer holds it).
	Done bool
	// Nothing: a resume that found no unfinished change.
	Nothing bool
	// SetCode is the set code, new after a key rotation.
	SetCode string
	// Notes are further sentences for the user (what could not be
	// delivered, what repair cannot erase).
	Notes []string
}

func (r *ChangeReport) names(f func(ChangeOutcome) bool) []string {
	var out []string
	for _, o := range r.Realms {
		if f(o) {
			out = append(out, o.Name)
		}
	}
	return out
}

// Summary says where the change stands in REALMS.md section 14's words.
func (r *ChangeReport) Summary() string {
	var b strings.Builder
	members := r.names(func(o ChangeOutcome) bool { return !o.Retiring })
	n := len(members)
	holders := r.names(func(o ChangeOutcome) bool { return !o.Retiring && o.Holds })
	committed := r.names(func(o ChangeOutcome) bool { return !o.Retiring && o.Committed })
	missing := r.names(func(o ChangeOutcome) bool { return !o.Retiring && !o.Committed })
	lacking := r.names(func(o ChangeOutcome) bool { return !o.Retiring && !o.Holds })
	what := "change"
	if r.Kind == "repair" || r.Kind == "rotate" {
		what = r.Kind
	}
	if r.Kind == "register" {
		what = "registration"
	}
	switch {
	case r.Nothing:
		return fmt.Sprintf("no unfinished change: nothing to resume; your key survives the loss of %s", realmCount(r.Tolerance))
	case r.Kind == "delete":
		deleted := r.names(func(o ChangeOutcome) bool { return !o.MayHoldOld })
		if r.Erased {
			fmt.Fprintf(&b, "your key is deleted at all %d realms", len(r.Realms))
		} else {
			fmt.Fprintf(&b, "your key is deleted at %d of %d realms; %s may still hold it", len(deleted), len(r.Realms), realmNames(r.OldHolders))
			if r.Complete {
				b.WriteString(" (fewer than the threshold: it no longer opens for the servers' operators alone, but anyone who also controls realms may still test the password)")
			} else {
				b.WriteString(": the password still opens your key there")
			}
			b.WriteString("; run `coffer delete` again when they are back")
		}
		return b.String()
	case !r.CommitSent && r.Kind == "register":
		// The first version: there is no old password to fall back on.
		fmt.Fprintf(&b, "the key is registered at %s; the registration waits for %s (%s): nothing is committed yet; "+
			"do not back up with this configuration until `coffer password change --resume` finishes it", realmNames(holders), realmNames(lacking), waitReasons(r, lacking))
	case !r.CommitSent:
		fmt.Fprintf(&b, "the new password is registered at %s; the %s waits for %s (%s); both passwords work until it is finished: `coffer password change --resume`",
			realmNames(holders), what, realmNames(lacking), waitReasons(r, lacking))
	case r.Forced && len(missing) > 0:
		fmt.Fprintf(&b, "%s committed at %d of %d realms: your key now survives the loss of %s until %s %s it",
			what, len(committed), n, realmCount(r.Tolerance), realmNames(missing), map[bool]string{true: "has", false: "have"}[len(missing) == 1])
	case len(missing) == 0:
		fmt.Fprintf(&b, "%s complete at %d of %d realms; your key survives the loss of %s", what, len(committed), n, realmCount(r.Tolerance))
	default:
		fmt.Fprintf(&b, "%s committed at %d of %d realms (%s not yet); your key survives the loss of %s", what, len(committed), n, realmNames(missing), realmCount(r.Tolerance))
	}
	// A finished repair's leftovers are the realms that left the set, which
	// nothing can finish: its note says so instead.
	if r.CommitSent && !r.Erased && !(r.Kind == "repair" && r.Done) {
		switch {
		case !r.Complete:
			fmt.Fprintf(&b, "\nthe old password still opens your key at up to %s; run `coffer password change --resume` to finish", Plural(uint(len(r.OldHolders)), "realm"))
		default:
			fmt.Fprintf(&b, "\nthe old password no longer opens the key for the servers' operators alone; %s may still hold it, and with it anyone who also controls realms may still test the old password: finish when %s back, or repair and rotate the key",
				describeOld(r), map[bool]string{true: "it is", false: "they are"}[len(r.OldHolders) == 1])
		}
	}
	for _, note := range r.Notes {
		b.WriteString("\n" + note)
	}
	return b.String()
}

func realmCount(k int) string {
	if k <= 0 {
		return "no realm"
	}
	return Plural(uint(k), "realm")
}

func describeOld(r *ChangeReport) string {
	var parts []string
	for _, o := range r.Realms {
		if !slices.Contains(r.OldHolders, o.Name) {
			continue
		}
		s := "realm " + QuoteName(o.Name)
		if !o.Reachable {
			s += " (unreachable)"
		}
		parts = append(parts, s)
	}
	if len(parts) <= 2 {
		return strings.Join(parts, " and ")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func waitReasons(r *ChangeReport, lacking []string) string {
	var parts []string
	for _, o := range r.Realms {
		if !slices.Contains(lacking, o.Name) {
			continue
		}
		switch {
		case !o.Reachable:
			parts = append(parts, QuoteName(o.Name)+" unreachable")
		case o.Err != nil:
			parts = append(parts, fmt.Sprintf("%s: %v", QuoteName(o.Name), o.Err))
		default:
			parts = append(parts, QuoteName(o.Name)+" did not take it")
		}
	}
	return strings.Join(parts, "; ")
}

// known is a version this run can act on: its checked manifest, the unlock
// keys of its realms when this run has them (from the password or from a
// resume blob), and the materials for realms lacking it (from a blob or
// because this run made it).
type known struct {
	*agreed
	unlock map[uint][]byte
	resume *ResumeBody
	blob   []byte
}

func (k *known) wipe() {
	for _, u := range k.unlock {
		clear(u)
	}
	if k.resume != nil {
		k.resume.Wipe()
	}
}

func (k *known) material(i uint) *protocol.VersionMaterial {
	if k.resume == nil {
		return nil
	}
	m := k.resume.material(i)
	if m == nil {
		return nil
	}
	return &protocol.VersionMaterial{Manifest: k.manifest, Index: i, Share: bytes.Clone(m.Share), UnlockKey: bytes.Clone(m.UnlockKey)}
}

// heldAt is the version's state at realm r by r's last receipt of this run,
// or nil: live, at r's index in the manifest, with this manifest.
func (k *known) heldAt(r *realm) *protocol.VersionState {
	if r.last == nil || r.last.State != protocol.RealmLive || r.id == nil {
		return nil
	}
	v := heldBy(r.last, k.hash)
	if v == nil || v.Index != k.index(r) {
		return nil
	}
	return v
}

// alone: r's last receipt shows the version committed and nothing else.
func (k *known) alone(r *realm) bool {
	v := k.heldAt(r)
	if v == nil || v.Status != protocol.VersionCommitted {
		return false
	}
	for _, o := range r.last.Versions {
		if o.Status != protocol.VersionEmpty && !bytes.Equal(o.ManifestHash, k.hash) {
			return false
		}
	}
	return true
}

// members are the configured realms the version lists, by index.
func (k *known) members() []*realm {
	out := make([]*realm, 0, len(k.byIndex))
	for i := 1; i <= len(k.body.Realms); i++ {
		out = append(out, k.byIndex[uint(i)])
	}
	return out
}

// holdersNow is H of section 3: the members whose receipts of this run show
// the version held.
func (k *known) holdersNow() []*realm {
	var out []*realm
	for _, r := range k.members() {
		if k.heldAt(r) != nil {
			out = append(out, r)
		}
	}
	return out
}

func (s *RealmSet) checkpoint() error {
	if s.opts.Checkpoint == nil {
		return nil
	}
	return s.opts.Checkpoint()
}

// changeBody is the manifest body of the configuration's unfinished
// change, or nil.
func (s *RealmSet) changeBody() *protocol.ManifestBody {
	c := s.rc.Change
	if c == nil || c.Kind == "delete" {
		return nil
	}
	_, m, err := c.version().decode()
	if err != nil {
		return nil
	}
	b, err := protocol.ParseManifest(m)
	if err != nil {
		return nil
	}
	return b
}

// thresholdAllowed: a manifest's t must be the configured one, or that of
// the change under way or of the version it replaces (a repair may change
// t, 13.3).
func (s *RealmSet) thresholdAllowed(h []byte, t int) bool {
	if t == s.threshold() {
		return true
	}
	c := s.rc.Change
	if c == nil {
		return false
	}
	if ch, err := hex.DecodeString(c.ManifestHash); err == nil && bytes.Equal(ch, h) {
		return true
	}
	if c.Old != nil {
		if oh, _, err := c.Old.decode(); err == nil && bytes.Equal(oh, h) {
			return true
		}
	}
	return false
}

// finishUnfinished is C6 after a recovery: the newest version signed by the
// anchor that this run saw (the configuration's change, or one held at any
// realm) is finished if it is not the recovered one committed everywhere.
// It returns the report (nil when nothing was unfinished) and the version a
// new change starts from, or nil when the unfinished one is not done.
func (s *RealmSet) finishUnfinished(ctx context.Context, op *opened) (*ChangeReport, *known, error) {
	cur := &known{agreed: op.ag, unlock: map[uint][]byte{}}
	for i, k := range op.unlock {
		cur.unlock[i] = bytes.Clone(k)
	}
	p, err := s.unfinished(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	if p == nil {
		// The recovered version: unfinished while a member lacks it
		// committed alone, or a retiring realm still answers with a record.
		if s.isDone(cur) {
			if s.rc.Change != nil && s.rc.Change.Kind != "delete" {
				// This device's change is done everywhere (a cut came
				// after its last commit): it is over.
				rep := s.report(s.rc.Change.Kind, cur, nil)
				rep.CommitSent, rep.Done = true, true
				s.rc.Change, s.rc.Retiring = nil, nil
				s.rc.Version = newRealmVersion(cur.manifest)
				parallel(s.realms, func(r *realm) {
					if r.conn != nil && r.id != nil {
						r.conn.DeleteBlob(ctx, cur.hash)
					}
				})
				return rep, cur, nil
			}
			return nil, cur, nil
		}
		if s.settled(cur) {
			// Done at every realm that answered: the others are simply
			// down, and a change may start (it waits for them, C2).
			return nil, cur, nil
		}
		p = cur
		if len(p.holdersNow()) < len(p.members()) {
			// Members lacking it get it from the blob, if one opens.
			if err := s.loadResume(ctx, p, op.key); err != nil {
				p.resume = nil
			}
		}
	} else if err := s.loadResume(ctx, p, op.key); err != nil {
		rep := s.report("resume", p, nil)
		rep.Notes = append(rep.Notes, fmt.Sprintf("an unfinished change of your key is held at %s, but its resume blob is not available (%v): "+
			"it can be committed only where it is held (with --force), or the set repaired onto new realms", realmNames(names(p.holdersNow())), err))
		return rep, nil, fmt.Errorf("client: %w: %v", ErrChangeWaits, err)
	}
	kind := "resume"
	if s.rc.Change != nil && s.rc.Change.ManifestHash == hex.EncodeToString(p.hash) {
		kind = s.rc.Change.Kind
	}
	rep, err := s.carry(ctx, kind, p, []*known{cur, p}, op.key)
	if err != nil {
		return rep, nil, err
	}
	if !rep.Done {
		return rep, nil, fmt.Errorf("client: %w", ErrChangeWaits)
	}
	if p != cur {
		cur.wipe()
	}
	return rep, p, nil
}

// unfinished finds the newest anchor-signed version newer than the
// recovered one: the configuration's change, or any version a realm's
// receipt of this run shows. nil when there is none.
func (s *RealmSet) unfinished(ctx context.Context, op *opened) (*known, error) {
	var best *known
	consider := func(h []byte, manifest []byte) {
		if bytes.Equal(h, op.ag.hash) {
			return
		}
		var ag *agreed
		var err error
		if manifest != nil {
			ag, err = s.checkManifest(manifest, h)
		} else {
			ag, err = s.checkVersion(ctx, h, nil)
		}
		if err != nil || ag.body.Sequence <= op.ag.body.Sequence {
			return
		}
		if best == nil || ag.body.Sequence > best.body.Sequence {
			best = &known{agreed: ag}
		}
	}
	if c := s.rc.Change; c != nil && c.Kind != "delete" {
		if h, m, err := c.version().decode(); err == nil {
			consider(h, m)
		}
	}
	seen := map[string]bool{}
	for _, r := range s.realms {
		if r.last == nil || r.last.State != protocol.RealmLive {
			continue
		}
		for _, v := range r.last.Versions {
			if v.Status == protocol.VersionEmpty || seen[string(v.ManifestHash)] {
				continue
			}
			seen[string(v.ManifestHash)] = true
			consider(v.ManifestHash, nil)
		}
	}
	return best, nil
}

// isDone: every member shows the version committed alone. Realms leaving
// the set (repair) are not waited for: once the old version is erased at
// the members, nothing a device holds opens a session on it there any
// more, so their delete is tried in the run that commits (carry) and what
// is left is reported, not carried (13.3, "What repair cannot do").
func (s *RealmSet) isDone(k *known) bool {
	for _, r := range k.members() {
		if !k.alone(r) {
			return false
		}
	}
	return true
}

// settled: isDone at every realm that answered with a live record in this
// run. A realm down, empty or burned holds nothing to finish; a new change
// delivers to it (open registration) or waits for it.
func (s *RealmSet) settled(k *known) bool {
	for _, r := range k.members() {
		if r.down == nil && r.last != nil && r.last.State == protocol.RealmLive && !k.alone(r) {
			return false
		}
	}
	return true
}

// loadResume fetches and opens p's resume blob: from the configuration when
// it is this device's change, else from every host in turn.
func (s *RealmSet) loadResume(ctx context.Context, p *known, key []byte) error {
	if p.resume != nil {
		return nil
	}
	var tried []string
	try := func(blob []byte) bool {
		body, err := OpenResume(blob, key, p.body.VersionID, p.hash)
		if err != nil {
			tried = append(tried, err.Error())
			return false
		}
		p.resume, p.blob = body, blob
		if p.unlock == nil {
			// Sessions on p, where it is held, open with its unlock keys.
			p.unlock = map[uint][]byte{}
			for _, m := range body.Materials {
				p.unlock[m.Index] = bytes.Clone(m.UnlockKey)
			}
		}
		return true
	}
	if c := s.rc.Change; c != nil && c.ManifestHash == hex.EncodeToString(p.hash) {
		if b, err := base64.StdEncoding.DecodeString(c.Resume); err == nil && try(b) {
			return nil
		}
	}
	for _, r := range s.realms {
		if r.conn == nil || r.id == nil {
			continue
		}
		b, err := r.conn.GetBlob(ctx, p.hash)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", r.name(), err))
			continue
		}
		if try(b) {
			return nil
		}
	}
	return fmt.Errorf("no resume blob opens (%s)", strings.Join(tried, "; "))
}

// carry delivers p to every member lacking it, commits it under C2 (or
// finishes a commit this device began, C3), and reports. have are the
// versions whose unlock keys this run holds, for sessions.
func (s *RealmSet) carry(ctx context.Context, kind string, p *known, have []*known, key []byte) (*ChangeReport, error) {
	members := p.members()
	errs := make(map[*realm]error)
	results := make([]error, len(s.realms))
	// Put phase: nothing is erased, the old version stays where it is.
	parallel(members, func(r *realm) {
		if r.down != nil || p.heldAt(r) != nil {
			return
		}
		results[r.pos] = s.deliver(ctx, r, p, have)
	})
	for _, r := range members {
		if results[r.pos] != nil {
			errs[r] = results[r.pos]
		}
	}
	holders := p.holdersNow()
	t, n := int(p.body.Threshold), len(members)
	own := s.rc.Change != nil && s.rc.Change.ManifestHash == hex.EncodeToString(p.hash)
	// C3: only this device's own recorded commit_sent lets it finish a
	// commit below C2's count. A realm's "committed" is no such record: a
	// compromised realm signs it at will (TestAClaimedCommitIsNotCommitSent).
	began := own && s.rc.Change.CommitSent
	commit := len(holders) == n || (s.opts.Force && len(holders) >= t) || (began && len(holders) > 0)
	forced := len(holders) < n && !began
	if commit {
		if own {
			// C3: recorded before the first commit is sent.
			s.rc.Change.State, s.rc.Change.CommitSent = "commit", true
			s.rc.Change.Forced = s.rc.Change.Forced || forced
			if err := s.checkpoint(); err != nil {
				return nil, err
			}
		}
		results = make([]error, len(s.realms))
		parallel(holders, func(r *realm) {
			if p.alone(r) {
				return
			}
			results[r.pos] = s.commitAt(ctx, r, p, have)
		})
		for _, r := range holders {
			if results[r.pos] != nil {
				errs[r] = results[r.pos]
			}
		}
	}
	// Realms leaving the set (repair): the old version is deleted there once
	// the new one is committed at every member (13.3).
	if commit && s.membersAllAlone(p) {
		parallel(s.realms, func(r *realm) {
			if !r.retiring || r.down != nil || r.last == nil || r.last.State == protocol.RealmNoRecord {
				return
			}
			results[r.pos] = s.deleteAt(ctx, r, have)
		})
		for _, r := range s.realms {
			if r.retiring && results[r.pos] != nil {
				errs[r] = results[r.pos]
			}
		}
	}
	rep := s.report(kind, p, errs)
	rep.CommitSent = commit
	rep.Forced = commit && (forced || (own && s.rc.Change.Forced))
	if commit {
		s.rc.Version = newRealmVersion(p.manifest)
		s.rc.Threshold = t
		if own {
			s.rc.Change.Erased = erasedKeys(rep, s)
		}
	}
	if s.isDone(p) {
		rep.Done = true
		s.rc.Version = newRealmVersion(p.manifest)
		s.rc.Change = nil
		s.rc.Retiring = nil
		// The blob holds every share of p: once p is everywhere it goes.
		parallel(s.realms, func(r *realm) {
			if r.conn != nil && r.id != nil {
				r.conn.DeleteBlob(ctx, p.hash)
			}
		})
	}
	return rep, nil
}

func (s *RealmSet) membersAllAlone(p *known) bool {
	for _, r := range p.members() {
		if !p.alone(r) {
			return false
		}
	}
	return true
}

func erasedKeys(rep *ChangeReport, s *RealmSet) []string {
	var out []string
	for i, o := range rep.Realms {
		if !o.MayHoldOld && s.realms[i].entry.Vault != nil {
			out = append(out, s.realms[i].entry.Vault.SigningKey)
		}
	}
	return out
}

// report is the per-realm account of p (C5): who holds it, who committed
// it, who may still hold an older version, and the tolerance.
func (s *RealmSet) report(kind string, p *known, errs map[*realm]error) *ChangeReport {
	rep := &ChangeReport{Kind: kind, Threshold: int(p.body.Threshold), Tolerance: -1, SetCode: s.rc.SetCode()}
	old := s.oldVersion(p)
	first := kind == "register" && old == nil // no older version anywhere: nothing old to hold
	rep.OldThreshold = s.threshold()
	if old != nil {
		rep.OldThreshold = int(old.Threshold)
	}
	committed := 0
	for _, r := range s.realms {
		o := ChangeOutcome{Name: r.entry.Name, Reachable: r.down == nil && r.last != nil, Retiring: r.retiring, Err: errs[r]}
		member := r.id != nil && p.index(r) != 0
		if !member && r.id != nil {
			o.Retiring = true
		}
		if member {
			o.Holds = p.heldAt(r) != nil
			o.Committed = p.alone(r)
			if o.Committed {
				committed++
			}
		}
		switch {
		case first:
		case !o.Reachable:
			o.MayHoldOld = old == nil || r.id == nil || old.IndexOf(r.id.SigningKey) != 0
		case r.last.State == protocol.RealmNoRecord:
		case member && o.Committed:
		default:
			for _, v := range r.last.Versions {
				if v.Status != protocol.VersionEmpty && !bytes.Equal(v.ManifestHash, p.hash) {
					o.MayHoldOld = true
				}
			}
		}
		if o.Err == nil && r.down != nil {
			o.Err = r.down
		}
		if o.MayHoldOld {
			rep.OldHolders = append(rep.OldHolders, o.Name)
		}
		rep.Realms = append(rep.Realms, o)
	}
	if committed > 0 {
		rep.Tolerance = committed - rep.Threshold
	} else if old != nil {
		// Nothing of p committed: the old version is what the key rests on.
		h := 0
		for _, r := range s.realms {
			if r.last != nil && r.last.State == protocol.RealmLive && r.id != nil && old.IndexOf(r.id.SigningKey) != 0 {
				for _, v := range r.last.Versions {
					if v.Status == protocol.VersionCommitted && bytes.Equal(v.VersionID, old.VersionID) {
						h++
					}
				}
			}
		}
		rep.Tolerance = h - int(old.Threshold)
	}
	rep.Complete = len(rep.OldHolders) < rep.OldThreshold
	rep.Erased = len(rep.OldHolders) == 0
	return rep
}

// oldVersion is the version p replaces: the change's recorded old version,
// else p's parent as the configuration knows it, else nil.
func (s *RealmSet) oldVersion(p *known) *protocol.ManifestBody {
	if c := s.rc.Change; c != nil && c.Old != nil && c.ManifestHash == hex.EncodeToString(p.hash) {
		if _, m, err := c.Old.decode(); err == nil {
			if b, err := protocol.ParseManifest(m); err == nil {
				return b
			}
		}
	}
	if s.rc.Version != nil {
		if h, m, err := s.rc.Version.decode(); err == nil && !bytes.Equal(h, p.hash) {
			if b, err := protocol.ParseManifest(m); err == nil {
				return b
			}
		}
	}
	return nil
}

// session opens a session at r on a version of have held there whose
// unlock key this run holds, preferring the committed one; allowPending
// says whether a pending version may be used (a put in a session on a
// pending version commits it there, V3, so C4 allows it only under C2).
func (s *RealmSet) session(ctx context.Context, r *realm, have []*known, want func(*known, *protocol.VersionState) bool) (*realmSession, *known, error) {
	var cands []*known
	for _, k := range have {
		if k == nil || k.unlock == nil {
			continue
		}
		v := k.heldAt(r)
		if v == nil || k.unlock[v.Index] == nil || !want(k, v) {
			continue
		}
		if v.Status == protocol.VersionCommitted {
			cands = append([]*known{k}, cands...)
		} else {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 {
		return nil, nil, errors.New("it holds no version this device can open a session on")
	}
	k := cands[0]
	v := k.heldAt(r)
	tk, rc, err := r.challenge(ctx, protocol.PurposeSession, k.body.VersionID)
	if err != nil {
		return nil, nil, err
	}
	if tk == nil {
		return nil, nil, fmt.Errorf("its record is locked (%q receipt)", RealmReceiptKindName(rc.Kind))
	}
	sess, err := r.unlock(ctx, tk, k.unlock[v.Index])
	if err != nil {
		return nil, nil, err
	}
	return sess, k, nil
}

// deliver puts p at r (C6, 13.1 step 3): by open registration where r holds
// no live record, else by put-version in a session on a version this run
// can open there.
func (s *RealmSet) deliver(ctx context.Context, r *realm, p *known, have []*known) error {
	idx := p.index(r)
	m := p.material(idx)
	if m == nil {
		return errors.New("this device has no material for it (no resume blob)")
	}
	defer m.Wipe()
	if r.last == nil {
		return errors.New("not probed")
	}
	if r.last.State != protocol.RealmLive {
		return r.register(ctx, m, p.body.VersionID, p.hash)
	}
	sess, _, err := s.session(ctx, r, have, func(k *known, v *protocol.VersionState) bool {
		if k == p {
			return false
		}
		// C4: a put in a session on a pending version commits that
		// version here: only once its own commit is allowed by C2.
		return v.Status == protocol.VersionCommitted || len(k.holdersNow()) == len(k.members())
	})
	if err != nil {
		return err
	}
	defer sess.wipe()
	got, err := sess.send(ctx, &protocol.RealmCommand{Command: protocol.RealmPutVersion, Material: m}, protocol.RealmReceiptRegistered)
	if err != nil {
		return err
	}
	sess.command(ctx, protocol.RealmClose, nil, protocol.RealmReceiptStatus)
	return holds(got, p.body.VersionID, p.hash, idx, protocol.VersionPending, protocol.VersionCommitted)
}

// commitAt commits p at r, in a session on p or on another version held
// there (V4: a commit may come from any session on a version still held).
func (s *RealmSet) commitAt(ctx context.Context, r *realm, p *known, have []*known) error {
	sess, _, err := s.session(ctx, r, have, func(*known, *protocol.VersionState) bool { return true })
	if err != nil {
		return err
	}
	defer sess.wipe()
	got, err := sess.command(ctx, protocol.RealmCommit, p.body.VersionID, protocol.RealmReceiptCommitted)
	if err != nil {
		return err
	}
	if v := got.Held(p.body.VersionID); v == nil || v.Status != protocol.VersionCommitted {
		return fmt.Errorf("client: %w: the committed receipt does not show the version committed", ErrBadReceipt)
	}
	sess.command(ctx, protocol.RealmClose, nil, protocol.RealmReceiptStatus)
	return nil
}

// deleteAt deletes the account's record at r (V5) in a session on any
// version this run can open there, and keeps the signed deleted receipt
// (6.3).
func (s *RealmSet) deleteAt(ctx context.Context, r *realm, have []*known) error {
	sess, _, err := s.session(ctx, r, have, func(*known, *protocol.VersionState) bool { return true })
	if err != nil {
		return err
	}
	defer sess.wipe()
	got, err := sess.command(ctx, protocol.RealmDelete, nil, protocol.RealmReceiptDeleted)
	if err != nil {
		return err
	}
	if got.State != protocol.RealmNoRecord {
		return fmt.Errorf("client: %w: the deleted receipt shows a record", ErrBadReceipt)
	}
	if b, err := protocol.Marshal(sess.signed); err == nil {
		r.entry.Deleted = base64.StdEncoding.EncodeToString(b)
	}
	return nil
}

// ChangePassword changes the password of the set's key (REALMS.md 13.1):
// it recovers K with password, finishes any unfinished change first (C6),
// then makes W (same set id, K and anchor; sequence + 1; the current version
// as parent), writes W's manifest, the change and the resume blob to the
// configuration (Checkpoint) and to every host (C1), puts W at every realm,
// and commits it only when this run's receipts show it at every realm (C2;
// with Force at ≥ t, the lower tolerance said). With newPassword nil it
// only finishes an unfinished change (`coffer password change --resume`).
func (s *RealmSet) ChangePassword(ctx context.Context, password, newPassword []byte) (*ChangeReport, error) {
	var newPW []byte
	if newPassword != nil {
		var err error
		if newPW, err = NormalizePassword(newPassword); err != nil {
			return nil, err
		}
		defer clear(newPW)
	}
	_, op, err := s.recoverOpen(ctx, password)
	if err != nil {
		return nil, err
	}
	defer op.wipe()
	rep, cur, err := s.finishUnfinished(ctx, op)
	if err != nil {
		return rep, err
	}
	defer cur.wipe()
	if newPW == nil {
		if rep == nil {
			rep = s.report("resume", cur, nil)
			rep.Done, rep.Nothing, rep.CommitSent = true, true, true
		}
		return rep, nil
	}
	w, err := s.makeVersion(cur, newPW, op.key, nil, versionPlan{})
	if err != nil {
		return nil, err
	}
	defer w.wipe()
	return s.startChange(ctx, "change", cur, w, op.key)
}

// startChange is C1 then the put and commit of w (13.1 steps 2-5).
func (s *RealmSet) startChange(ctx context.Context, kind string, cur, w *known, key []byte) (*ChangeReport, error) {
	s.rc.Change = &RealmChange{Kind: kind, State: "put", ManifestHash: hex.EncodeToString(w.hash),
		Manifest: base64.StdEncoding.EncodeToString(w.manifest), Old: newRealmVersion(cur.manifest),
		Resume: base64.StdEncoding.EncodeToString(w.blob)}
	if err := s.checkpoint(); err != nil {
		return nil, err
	}
	parallel(s.realms, func(r *realm) {
		if r.conn == nil || r.id == nil || r.down != nil {
			return
		}
		r.conn.PutManifest(ctx, w.manifest)
		r.conn.PutBlob(ctx, w.hash, w.blob)
	})
	return s.carry(ctx, kind, w, []*known{cur, w}, key)
}

// versionPlan is what a new version changes besides the password: the
// realms (repair), the threshold and per-realm limit, a new K (rotation).
type versionPlan struct {
	realms    []*realm // nil: the current version's
	threshold int
	perRealm  uint
	newKey    []byte // K' for a rotation
}

// makeVersion makes W from cur (5.2): a fresh sharing of a new OPRF key for
// pw, W's manifest signed by the anchor (a rotation's new anchor, with the
// handover signed by the old), its unlock keys and the resume blob sealed
// under K (or K').
func (s *RealmSet) makeVersion(cur *known, pw, key []byte, _ []*realm, plan versionPlan) (*known, error) {
	realms := plan.realms
	if realms == nil {
		realms = cur.members()
	}
	t := plan.threshold
	if t == 0 {
		t = int(cur.body.Threshold)
	}
	limit := plan.perRealm
	if limit == 0 {
		limit = cur.body.Limit
	}
	n := len(realms)
	setID := cur.body.SetID
	versionID := make([]byte, protocol.VersionIDSize)
	if _, err := io.ReadFull(s.random, versionID); err != nil {
		return nil, err
	}
	wrapKey := key
	if plan.newKey != nil {
		wrapKey = plan.newKey
	}
	anchor, err := realmkey.AnchorKey(wrapKey, setID)
	if err != nil {
		return nil, err
	}
	defer clear(anchor)
	var handover []byte
	if plan.newKey != nil {
		old, err := realmkey.AnchorKey(key, setID)
		if err != nil {
			return nil, err
		}
		handover = protocol.SignHandover(old, setID, anchor.Public().(ed25519.PublicKey))
		clear(old)
	}
	dv, err := s.dealVersion(pw, setID, versionID, t, n, wrapKey)
	if err != nil {
		return nil, err
	}
	defer dv.wipe()
	dealing, sch, wrapped := dv.dealing, dv.sch, dv.wrapped
	body := &protocol.ManifestBody{
		Version: protocol.ManifestVersion, VersionID: versionID, Sequence: cur.body.Sequence + 1, SetID: bytes.Clone(setID),
		Threshold: uint(t), Commitments: dealing.Commitments, Limit: limit, Check: bytes.Clone(sch.Check[:]), Wrapped: wrapped,
		Parent: bytes.Clone(cur.body.VersionID), Anchor: bytes.Clone(anchor.Public().(ed25519.PublicKey)), Handover: handover,
	}
	for _, r := range realms {
		acc, err := r.entry.account()
		if err != nil || r.entry.signingKey() == nil {
			return nil, fmt.Errorf("client: realm %s was never reached, so it cannot be in a version yet", r.name())
		}
		body.Realms = append(body.Realms, r.entry.signingKey())
		body.Accounts = append(body.Accounts, acc)
	}
	manifest, err := protocol.SignManifest(anchor, body)
	if err != nil {
		return nil, err
	}
	hash := protocol.ManifestHash(manifest)
	w := &known{agreed: &agreed{manifest: manifest, hash: hash, body: body, byIndex: map[uint]*realm{}, shares: map[uint][]byte{}},
		unlock: map[uint][]byte{}, resume: &ResumeBody{ManifestHash: hash}}
	for i, r := range realms {
		idx := uint(i + 1)
		w.byIndex[idx] = r
		u := sch.UnlockKey(i+1, r.entry.signingKey())
		w.unlock[idx] = u
		w.resume.Materials = append(w.resume.Materials, ResumeMaterial{Index: idx, Share: bytes.Clone(dealing.Shares[i]), UnlockKey: bytes.Clone(u)})
	}
	if w.blob, err = SealResume(s.random, wrapKey, versionID, w.resume); err != nil {
		w.wipe()
		return nil, err
	}
	return w, nil
}
