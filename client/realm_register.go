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

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// RealmOutcome is what one realm did in a registration.
type RealmOutcome struct {
	Name        string
	Registered  bool  // this run's signed registered receipt shows the version pending
	Committed   bool  // this run's signed committed receipt shows it committed
	ManifestErr error // the manifest could not be stored at its host (others serve it)
	Err         error // why it is not registered or not committed
	// Released counts the evaluations of the new version made between its
	// registration and its commit, none by this device: the commit's
	// confirmation released them (rule N5), so they are shown here or
	// nowhere.
	Released uint
}

// RegisterReport is a registration's result, realm by realm.
type RegisterReport struct {
	Realms  []RealmOutcome
	Bounds  *RealmBounds
	SetCode string // to keep beside the password hint: pins the anchor on a fresh device
	// Committed: the version is committed at every realm that registered
	// it (all n, or at least t with Force). Otherwise it is pending where
	// it was registered, and Missing names the realms without it.
	Committed bool
	Missing   []string
	// Tolerance is how many realms the key survives the loss of: realms
	// holding the committed version, minus t (REALMS.md C5); -1 before a
	// commit.
	Tolerance int
	Threshold int
}

// released names the evaluations a commit's confirmation released: made
// against the new version before its commit, none by this device. A commit
// whose answer was lost may have released them too, so they are shown
// whether or not it is known to have committed.
func (r *RegisterReport) released() string {
	var s string
	for _, o := range r.Realms {
		if o.Released > 0 {
			s += fmt.Sprintf("; realm %s: %s of the new version before its commit, not by this device (someone may have tried passwords)",
				QuoteName(o.Name), Plural(o.Released, "evaluation"))
		}
	}
	return s
}

// Summary is what the CLI says after a registration (REALMS.md section 14).
func (r *RegisterReport) Summary() string {
	n := len(r.Realms)
	committed := 0
	for _, o := range r.Realms {
		if o.Committed {
			committed++
		}
	}
	if !r.Committed {
		return fmt.Sprintf("the key is registered at %d of %d realms and waits for %s: nothing is committed yet; "+
			"it can be committed once every realm has it (or, with --force, at %d)", n-len(r.Missing), n, realmNames(r.Missing), r.Threshold) +
			r.released()
	}
	s := fmt.Sprintf("registered at %d of %d realms; your key survives the loss of %s", committed, n, Plural(uint(r.Tolerance), "realm"))
	if len(r.Missing) > 0 {
		s += fmt.Sprintf(" (a realm that lies counts as lost) until %s %s it", realmNames(r.Missing),
			map[bool]string{true: "has", false: "have"}[len(r.Missing) == 1])
	}
	s += r.released()
	return s
}

// Register puts K behind password at the realm set (REALMS.md 5.2 and 10):
// a fresh set id and anchor, a fresh t-of-n sharing of a new OPRF key, the
// manifest signed by the anchor and stored at every host, then at every realm
// an open registration (challenge of purpose 2, realm-register) with its
// material. Only when this run's signed receipts show the version at every
// realm (or at ≥ t with Force, rule C2) does it unlock each such realm and
// commit there, confirming the unlock in the session's first command.
// limit is the user's --limit (0: 10), the bound against t − 1 realms; each
// realm counts to L = ⌊limit/(n − t + 1)⌋.
func (s *RealmSet) Register(ctx context.Context, password []byte, k *BackupKey, limit uint) (*RegisterReport, error) {
	if s.rc.Version != nil || s.rc.SetID != "" {
		return nil, errors.New("client: this realm set already has a registered key (set_id and version are set); " +
			"a new password or key for it is a change, not a registration")
	}
	pw, err := NormalizePassword(password)
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	if err := s.connectAll(ctx); err != nil {
		return nil, err
	}
	bounds, err := s.Bounds(limit)
	if err != nil {
		return nil, err
	}
	t, n := s.threshold(), len(s.realms)
	setID, versionID := make([]byte, protocol.SetIDSize), make([]byte, protocol.VersionIDSize)
	if _, err := io.ReadFull(s.random, setID); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(s.random, versionID); err != nil {
		return nil, err
	}
	key := k.Bytes()
	defer clear(key)
	anchor, err := realmkey.AnchorKey(key, setID)
	if err != nil {
		return nil, err
	}
	defer clear(anchor)

	dv, err := s.dealVersion(pw, setID, versionID, t, n, key)
	if err != nil {
		return nil, err
	}
	defer dv.wipe()
	dealing, sch, wrapped := dv.dealing, dv.sch, dv.wrapped
	body := &protocol.ManifestBody{
		Version:     protocol.ManifestVersion,
		VersionID:   versionID,
		Sequence:    1,
		SetID:       setID,
		Threshold:   uint(t),
		Commitments: dealing.Commitments,
		Limit:       bounds.PerRealm,
		Check:       bytes.Clone(sch.Check[:]),
		Wrapped:     wrapped,
		Parent:      make([]byte, protocol.VersionIDSize),
		Anchor:      bytes.Clone(anchor.Public().(ed25519.PublicKey)),
	}
	for _, r := range s.realms {
		body.Realms = append(body.Realms, r.entry.signingKey())
		acc, err := r.entry.account()
		if err != nil {
			return nil, fmt.Errorf("client: realm %s: %w", r.name(), err)
		}
		body.Accounts = append(body.Accounts, acc)
	}
	manifest, err := protocol.SignManifest(anchor, body)
	if err != nil {
		return nil, err
	}
	manifestHash := protocol.ManifestHash(manifest)
	materials := make([]*protocol.VersionMaterial, n)
	for i, r := range s.realms {
		materials[i] = &protocol.VersionMaterial{Manifest: manifest, Index: uint(i + 1),
			Share: bytes.Clone(dealing.Shares[i]), UnlockKey: sch.UnlockKey(i+1, r.entry.signingKey())}
	}
	defer func() {
		for _, m := range materials {
			m.Wipe()
		}
	}()
	resume := &ResumeBody{ManifestHash: manifestHash}
	for _, m := range materials {
		resume.Materials = append(resume.Materials, ResumeMaterial{Index: m.Index, Share: bytes.Clone(m.Share), UnlockKey: bytes.Clone(m.UnlockKey)})
	}
	blob, err := SealResume(s.random, key, versionID, resume)
	resume.Wipe()
	if err != nil {
		return nil, err
	}
	dealing.Wipe()

	// The device keeps what it made, with the resume blob, before anything
	// is sent (rule C1): a cut after some registrations leaves a device
	// that knows the version, and once t realms hold it a recovery opens
	// the blob and finishes it (C6: `coffer password change --resume`).
	s.rc.SetID, s.rc.Anchor = hex.EncodeToString(setID), hex.EncodeToString(body.Anchor)
	s.rc.Limit, s.rc.PerRealm = bounds.Limit, bounds.PerRealm
	s.rc.Version = newRealmVersion(manifest)
	s.rc.Change = &RealmChange{Kind: "register", State: "put", ManifestHash: hex.EncodeToString(manifestHash),
		Manifest: base64.StdEncoding.EncodeToString(manifest), Resume: base64.StdEncoding.EncodeToString(blob)}
	if err := s.checkpoint(); err != nil {
		return nil, err
	}

	report := &RegisterReport{Realms: make([]RealmOutcome, n), Bounds: bounds, SetCode: s.rc.SetCode(), Tolerance: -1, Threshold: t}
	parallel(s.realms, func(r *realm) {
		o := &report.Realms[r.pos]
		o.Name = r.entry.Name
		if r.down != nil {
			o.Err = r.down
			return
		}
		o.ManifestErr = r.conn.PutManifest(ctx, manifest)
		r.conn.PutBlob(ctx, manifestHash, blob) // the configuration holds it too
		o.Err = r.register(ctx, materials[r.pos], versionID, manifestHash)
		o.Registered = o.Err == nil
	})
	var holders []*realm
	for _, r := range s.realms {
		if report.Realms[r.pos].Registered {
			holders = append(holders, r)
		} else {
			report.Missing = append(report.Missing, r.entry.Name)
		}
	}
	if len(holders) < n && !(s.opts.Force && len(holders) >= t) {
		return report, nil
	}
	// C3: recorded before the first commit is sent.
	s.rc.Change.State, s.rc.Change.CommitSent, s.rc.Change.Forced = "commit", true, len(holders) < n
	if err := s.checkpoint(); err != nil {
		return nil, err
	}
	parallel(holders, func(r *realm) {
		o := &report.Realms[r.pos]
		o.Err = r.commit(ctx, versionID, materials[r.pos].UnlockKey)
		o.Committed = o.Err == nil
		o.Released = r.released
	})
	committed := 0
	for _, o := range report.Realms {
		if o.Committed {
			committed++
		}
	}
	report.Committed = committed == len(holders)
	if committed == n {
		// Committed everywhere: nothing is left to finish, and the blob,
		// which holds every share, goes.
		s.rc.Change = nil
		parallel(s.realms, func(r *realm) {
			if r.conn != nil && r.id != nil {
				r.conn.DeleteBlob(ctx, manifestHash)
			}
		})
	}
	if committed > 0 {
		report.Tolerance = committed - t
	}
	report.Missing = report.Missing[:0]
	for _, o := range report.Realms {
		if !o.Committed {
			report.Missing = append(report.Missing, o.Name)
		}
	}
	return report, nil
}

// register is open registration at one realm: a purpose-2 ticket, then the
// material. It succeeds only with a registered receipt bound to the request
// that shows the version held with this manifest and index.
func (r *realm) register(ctx context.Context, m *protocol.VersionMaterial, versionID, manifestHash []byte) error {
	t, rc, err := r.challenge(ctx, protocol.PurposeRegister, versionID)
	if err != nil {
		if errors.Is(err, &protocol.Error{Code: protocol.CodeVersion}) {
			return fmt.Errorf("the realm already holds a live key for this account (%w)", err)
		}
		return err
	}
	if t == nil {
		return fmt.Errorf("client: %w: a %q receipt and no register ticket", ErrBadReceipt, RealmReceiptKindName(rc.Kind))
	}
	var reply protocol.RealmReceiptReply
	secret, nonce, err := r.call(ctx, protocol.TypeRealmRegister, &protocol.RealmRegister{Handle: t.handle, Material: *m}, &reply)
	if err != nil {
		return err
	}
	defer secret.Wipe()
	got, err := r.receipt(&reply.Receipt, secret.RequestHash, nonce, protocol.RealmReceiptRegistered)
	if err != nil {
		return err
	}
	return holds(got, versionID, manifestHash, m.Index, protocol.VersionPending, protocol.VersionCommitted)
}

// holds checks that a receipt shows versionID held, with the manifest and
// index given, in one of the statuses.
func holds(rc *protocol.RealmReceipt, versionID, manifestHash []byte, index uint, statuses ...protocol.VersionStatus) error {
	v := rc.Held(versionID)
	if v == nil || rc.State != protocol.RealmLive {
		return fmt.Errorf("client: %w: the %q receipt does not show the version held", ErrBadReceipt, RealmReceiptKindName(rc.Kind))
	}
	if !bytes.Equal(v.ManifestHash, manifestHash) || v.Index != index {
		return fmt.Errorf("client: %w: the %q receipt shows the version with another manifest or index", ErrBadReceipt, RealmReceiptKindName(rc.Kind))
	}
	for _, st := range statuses {
		if v.Status == st {
			return nil
		}
	}
	return fmt.Errorf("client: %w: the %q receipt shows the version in status %d", ErrBadReceipt, RealmReceiptKindName(rc.Kind), v.Status)
}

// commit opens a session on versionID with a challenge (which counts
// nothing) and commits the version in its first command, which also
// confirms the unlock (rule N5).
func (r *realm) commit(ctx context.Context, versionID, unlockKey []byte) error {
	t, rc, err := r.challenge(ctx, protocol.PurposeSession, versionID)
	if err != nil {
		return err
	}
	if t == nil {
		return fmt.Errorf("the realm's record is locked (%q receipt)", RealmReceiptKindName(rc.Kind))
	}
	sess, err := r.unlock(ctx, t, unlockKey)
	if err != nil {
		return err
	}
	defer sess.wipe()
	got, err := sess.command(ctx, protocol.RealmCommit, versionID, protocol.RealmReceiptCommitted)
	if err != nil {
		return err
	}
	v := got.Held(versionID)
	if v == nil || v.Status != protocol.VersionCommitted {
		return fmt.Errorf("client: %w: the committed receipt does not show the version committed", ErrBadReceipt)
	}
	// The session has done its work; closing it frees the realm's slot.
	sess.command(ctx, protocol.RealmClose, nil, protocol.RealmReceiptStatus)
	return nil
}

// dealtVersion is what every new version needs before its manifest (5.2): a
// fresh sharing of a new OPRF key, the key schedule of the OPRF output at
// the password, and the backup key wrapped under its export key.
type dealtVersion struct {
	dealing *realmkey.Dealing
	sch     *realmkey.Schedule
	wrapped []byte
}

func (d *dealtVersion) wipe() { d.dealing.Wipe(); d.sch.Wipe() }

// dealVersion deals a t-of-n key for version versionID of set setID and
// derives the version's schedule from pw; key is the backup key it wraps.
func (s *RealmSet) dealVersion(pw, setID, versionID []byte, t, n int, key []byte) (*dealtVersion, error) {
	dealing, err := realmkey.Deal(t, n)
	if err != nil {
		return nil, err
	}
	input := realmkey.Input(setID, pw)
	defer clear(input)
	y, err := dealing.Evaluate(input)
	if err != nil {
		dealing.Wipe()
		return nil, err
	}
	defer clear(y)
	sch, err := s.schedule(y, versionID, setID)
	if err != nil {
		dealing.Wipe()
		return nil, err
	}
	wrapped, err := protocol.WrapKey(s.random, sch.Export[:], setID, key)
	if err != nil {
		dealing.Wipe()
		sch.Wipe()
		return nil, err
	}
	return &dealtVersion{dealing: dealing, sch: sch, wrapped: wrapped}, nil
}
