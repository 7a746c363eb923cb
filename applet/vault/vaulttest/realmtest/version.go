package realmtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// FastStretch stands in for Argon2id (realmkey.Stretch) in tests: the
// realms cannot tell, and tests stay fast.
func FastStretch(y []byte) []byte {
	s := sha256.Sum256(y)
	return s[:]
}

// Version is one version of a realm set as its registering client made it.
// Realm i (1-based) is Realms[i-1]; its material is Material(i).
type Version struct {
	Realms       []*Realm
	Body         *protocol.ManifestBody
	Manifest     []byte
	ManifestHash []byte
	Dealing      *realmkey.Dealing
	SetID        []byte
	Password     []byte
	UnlockKeys   [][]byte // UnlockKeys[i-1] is realm i's
	Stretch      func([]byte) []byte
}

// VersionOptions are what a test may choose about a version; zero values
// take the defaults shown.
type VersionOptions struct {
	Threshold int                          // ⌊n/2⌋ + 1
	Limit     uint                         // protocol.DefaultLimit
	SetID     []byte                       // random
	Anchor    ed25519.PrivateKey           // realmkey.AnchorKey of a random backup key and SetID
	Sequence  uint64                       // 1
	Parent    []byte                       // zeros
	VersionID []byte                       // random
	Stretch   func([]byte) []byte          // FastStretch
	Edit      func(*protocol.ManifestBody) // changes the body before it is signed
}

// NewVersion deals a key for realms, signs the manifest with the anchor and
// derives each realm's unlock key from password, as a registering client
// does (REALMS.md 5.2).
func NewVersion(realms []*Realm, password []byte, o VersionOptions) (*Version, error) {
	n := len(realms)
	if o.Threshold == 0 {
		o.Threshold = n/2 + 1
	}
	if o.Limit == 0 {
		o.Limit = protocol.DefaultLimit
	}
	if o.SetID == nil {
		o.SetID = random(protocol.SetIDSize)
	}
	if o.Anchor == nil {
		a, err := realmkey.AnchorKey(random(protocol.BackupKeySize), o.SetID)
		if err != nil {
			return nil, err
		}
		o.Anchor = a
	}
	if o.Sequence == 0 {
		o.Sequence = 1
	}
	if o.Parent == nil {
		o.Parent = make([]byte, protocol.VersionIDSize)
	}
	if o.VersionID == nil {
		o.VersionID = random(protocol.VersionIDSize)
	}
	if o.Stretch == nil {
		o.Stretch = FastStretch
	}
	d, err := realmkey.Deal(o.Threshold, n)
	if err != nil {
		return nil, err
	}
	ver := &Version{Realms: realms, Dealing: d, SetID: o.SetID, Password: password, Stretch: o.Stretch}
	y, err := d.Evaluate(realmkey.Input(o.SetID, password))
	if err != nil {
		return nil, err
	}
	sch, err := realmkey.NewScheduleStretched(y, o.Stretch(y), o.VersionID, o.SetID)
	if err != nil {
		return nil, err
	}
	defer sch.Wipe()
	body := &protocol.ManifestBody{
		Version: protocol.ManifestVersion, VersionID: o.VersionID, Sequence: o.Sequence, SetID: o.SetID,
		Threshold: uint(o.Threshold), Commitments: d.Commitments, Limit: o.Limit, Check: append([]byte(nil), sch.Check[:]...),
		Wrapped: random(protocol.MinWrappedKeySize), Parent: o.Parent, Anchor: o.Anchor.Public().(ed25519.PublicKey),
	}
	for i, r := range realms {
		body.Realms = append(body.Realms, r.Identity.SigningKey)
		body.Accounts = append(body.Accounts, r.UserID)
		ver.UnlockKeys = append(ver.UnlockKeys, sch.UnlockKey(i+1, r.Identity.SigningKey))
	}
	if o.Edit != nil {
		o.Edit(body)
	}
	if ver.Manifest, err = protocol.SignManifest(o.Anchor, body); err != nil {
		return nil, err
	}
	ver.Body, ver.ManifestHash = body, protocol.ManifestHash(ver.Manifest)
	return ver, nil
}

// ID is the version's id.
func (v *Version) ID() []byte { return v.Body.VersionID }

// Material is realm index's part of the version.
func (v *Version) Material(index int) protocol.VersionMaterial {
	return protocol.VersionMaterial{Manifest: v.Manifest, Index: uint(index),
		Share: append([]byte(nil), v.Dealing.Shares[index-1]...), UnlockKey: append([]byte(nil), v.UnlockKeys[index-1]...)}
}

// RegisterAll registers the version openly at every realm.
func (v *Version) RegisterAll(ctx context.Context) error {
	for i, r := range v.Realms {
		rc, err := r.RegisterOpen(ctx, v.Material(i+1), v.ID())
		if err != nil {
			return fmt.Errorf("realm %d: %w", i+1, err)
		}
		if rc.Held(v.ID()) == nil {
			return fmt.Errorf("realm %d: the registered receipt does not show the version", i+1)
		}
	}
	return nil
}

// Recovery is one try of a password at some realms of a version.
type Recovery struct {
	Output      []byte        // y, the VOPRF output
	Evaluations []*Evaluation // in the order of Indices
	Indices     []int
}

// Recover evaluates password at the realms of indices (1-based), verifies
// every proof against the manifest's public shares and combines.
func (v *Version) Recover(ctx context.Context, password []byte, indices ...int) (*Recovery, error) {
	input := realmkey.Input(v.SetID, password)
	blind, err := realmkey.NewBlind(input)
	if err != nil {
		return nil, err
	}
	defer blind.Wipe()
	rec := &Recovery{Indices: indices}
	var evaluated [][]byte
	for _, i := range indices {
		e, err := v.Realms[i-1].Evaluate(ctx, v.ID(), blind.Blinded(), v.ManifestHash, i)
		if err != nil {
			return rec, fmt.Errorf("realm %d: %w", i, err)
		}
		rec.Evaluations = append(rec.Evaluations, e)
		if e.Receipt.Kind != protocol.RealmReceiptAttempt {
			return rec, fmt.Errorf("realm %d: locked", i)
		}
		y, err := realmkey.PublicShare(v.Body.Commitments, i)
		if err != nil {
			return rec, err
		}
		if err := realmkey.VerifyEvaluation(y, blind.Blinded(), e.Evaluated, e.Proof); err != nil {
			return rec, fmt.Errorf("realm %d: %w", i, err)
		}
		evaluated = append(evaluated, e.Evaluated)
	}
	if rec.Output, err = blind.Finalize(input, indices, evaluated); err != nil {
		return rec, err
	}
	return rec, nil
}

// UnlockKeysFor derives the unlock keys a recovery's output gives and reports
// whether the output passes the manifest's check (the password was right).
func (v *Version) UnlockKeysFor(y []byte) ([][]byte, bool, error) {
	sch, err := realmkey.NewScheduleStretched(y, v.Stretch(y), v.ID(), v.SetID)
	if err != nil {
		return nil, false, err
	}
	defer sch.Wipe()
	var keys [][]byte
	for i, r := range v.Realms {
		keys = append(keys, sch.UnlockKey(i+1, r.Identity.SigningKey))
	}
	return keys, sch.CheckMatches(v.Body.Check), nil
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}
