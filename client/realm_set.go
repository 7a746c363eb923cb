package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// RealmOptions configure a RealmSet.
type RealmOptions struct {
	HTTPClient *http.Client // nil: a default with a timeout
	Rand       io.Reader    // nil: crypto/rand
	// AllowInsecure accepts insecure realms (also accepted when the
	// configuration's AllowInsecure is set); they count as compromised.
	AllowInsecure bool
	// AllowUnlogged, LogSource and Notice are Options': every realm is
	// checked against the configuration's release log as the single vault
	// is. Notice may be called from several realms' goroutines at once.
	AllowUnlogged bool
	LogSource     logcheck.Source
	Notice        func(Notice)
	// Force lets a registration commit once at least t realms signed it,
	// instead of all n (REALMS.md rule C2), at a lower tolerance.
	Force bool
	// EvidenceDir is where a lying realm's evidence file is written
	// ("" : the current folder).
	EvidenceDir string
	// SetCode pins the set's anchor on a device that has none (5.6): the
	// anchor of a manifest is accepted only if it gives this code.
	SetCode string
	// CheckKey, on a device with no pinned anchor, must accept a recovered
	// K before the client sends any unlock, pins the anchor or returns K
	// (5.6, 11.6): KeyOpensBackup checks that K opens one of the user's
	// backups. With it a device needs no set code; a K it refuses is
	// treated at the realms as a wrong password (random tags).
	CheckKey func(*BackupKey) error
	// OtherVersion makes a recovery use the other version held by t
	// realms, not the one it would choose: the password of a change made
	// on another device and not yet finished (10, `--other-version`).
	OtherVersion bool
	// Checkpoint, if set, saves the configuration; a change calls it
	// before its first put (C1) and before its first commit (C3), so that
	// a cut leaves the device knowing what it started.
	Checkpoint func() error

	// noFinish keeps a recovery from carrying an unfinished change
	// forward (tests that look without touching).
	noFinish bool

	// stretch replaces Argon2id in tests (nil: realmkey.Stretch, the only
	// stretching real versions use).
	stretch func(y []byte) []byte
	// now is Options'.
	now func() time.Time
}

// RealmSet is a password-mode account whose key is held by a realm set
// (protocol/REALMS.md): register, recover, probe. It updates the
// configuration in place (pins, accounts, sequences, receipts, the set's
// version); the caller saves it, also after errors.
type RealmSet struct {
	cfg    *Config
	rc     *RealmsConfig
	opts   RealmOptions
	random io.Reader
	realms []*realm
	trust  *vaultTrust
}

// OpenRealmSet prepares the set of cfg. Nothing is sent until a method
// runs.
func OpenRealmSet(cfg *Config, opts RealmOptions) (*RealmSet, error) {
	if cfg.Mode != ModePassword || cfg.Realms == nil {
		return nil, errors.New("client: this configuration has no realm set")
	}
	if err := cfg.Realms.validate(); err != nil {
		return nil, fmt.Errorf("client: configuration: %w", err)
	}
	s := &RealmSet{cfg: cfg, rc: cfg.Realms, opts: opts, random: opts.Rand}
	s.trust = &vaultTrust{pin: cfg.Log, allowInsecure: s.allowInsecure(), allowUnlogged: opts.AllowUnlogged,
		source: opts.LogSource, notice: opts.Notice, httpClient: opts.HTTPClient, now: opts.now}
	if s.random == nil {
		s.random = rand.Reader
	}
	for i, e := range cfg.Realms.Set {
		s.realms = append(s.realms, &realm{entry: e, pos: i, random: s.random})
	}
	for _, e := range cfg.Realms.Retiring {
		s.realms = append(s.realms, &realm{entry: e, pos: len(s.realms), random: s.random, retiring: true})
	}
	return s, nil
}

func (s *RealmSet) allowInsecure() bool { return s.opts.AllowInsecure || s.cfg.AllowInsecure }

// connectAll connects every realm in parallel (realm.connect); a realm that
// fails is marked down with the reason. Two realms showing one signing key
// stop everything (REALMS.md 4, rule 3).
func (s *RealmSet) connectAll(ctx context.Context) error {
	// The release log from every realm's host (and the pinned log URL)
	// first: one host's old copy cannot hide a revocation another serves.
	var entries []*RealmEntry
	for _, r := range s.realms {
		entries = append(entries, r.entry)
	}
	s.trust.prefetchRealms(ctx, entries, s.opts.HTTPClient, true)
	parallel(s.realms, func(r *realm) {
		r.down = r.connect(ctx, s.opts.HTTPClient, s.trust)
	})
	seen := map[string]*realm{}
	for _, r := range s.realms {
		if r.id == nil {
			continue
		}
		if o := seen[string(r.id.SigningKey)]; o != nil {
			return fmt.Errorf("client: realms %s and %s are the same device (one signing key): one device counted twice would make t − 1 devices a threshold; refused",
				o.name(), r.name())
		}
		seen[string(r.id.SigningKey)] = r
	}
	return nil
}

func (s *RealmSet) threshold() int { return s.rc.Threshold }

func (s *RealmSet) schedule(y, versionID, setID []byte) (*realmkey.Schedule, error) {
	if s.opts.stretch == nil {
		return realmkey.NewSchedule(y, versionID, setID)
	}
	st := s.opts.stretch(y)
	defer clear(st)
	return realmkey.NewScheduleStretched(y, st, versionID, setID)
}

// RealmFailure says why one realm did not serve in a run.
type RealmFailure struct {
	Name   string
	Err    error
	Lying  bool   // it signed an evaluation that does not match its share
	Report string // the evidence file written for a lying realm
}

func (f RealmFailure) String() string {
	if f.Lying {
		s := fmt.Sprintf("realm %s returned an evaluation that does not match its registered key share", QuoteName(f.Name))
		if f.Report != "" {
			s += fmt.Sprintf(" (evidence saved in %s)", QuoteName(f.Report))
		}
		return s
	}
	return fmt.Sprintf("realm %s did not answer (%v)", QuoteName(f.Name), f.Err)
}

// QuorumError is a run that could not reach t realms: it says how many
// answered, how many are needed, and why each other one failed (REALMS.md
// section 14).
type QuorumError struct {
	Needed, Answered, N int
	What                string // what the realms were needed for
	Failures            []RealmFailure
}

func (e *QuorumError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.String()
	}
	s := fmt.Sprintf("%d of %d realms needed", e.Needed, e.N)
	if e.What != "" {
		s += " " + e.What
	}
	s += fmt.Sprintf("; %d answered", e.Answered)
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}

// Lying returns the failures of realms caught lying.
func (e *QuorumError) Lying() []RealmFailure {
	var out []RealmFailure
	for _, f := range e.Failures {
		if f.Lying {
			out = append(out, f)
		}
	}
	return out
}

// realmLimitInputs is what DeriveRealmBounds needs, from the pinned bundles.
func (s *RealmSet) realmLimitInputs() ([]RealmLimitInput, error) {
	var in []RealmLimitInput
	for _, r := range s.realms {
		if r.entry.Vault == nil {
			return nil, fmt.Errorf("client: realm %s was never reached, so its limits and identity are unknown: %v", r.name(), r.down)
		}
		in = append(in, RealmLimitInput{Name: r.entry.Name, MaxLimit: r.entry.Vault.MaxLimit, Insecure: r.entry.Vault.Insecure})
	}
	return in, nil
}

// Bounds are the set's guess bounds for the limit in the configuration (or
// limit, if not 0), from the pinned bundles.
func (s *RealmSet) Bounds(limit uint) (*RealmBounds, error) {
	if limit == 0 {
		limit = s.rc.Limit
	}
	in, err := s.realmLimitInputs()
	if err != nil {
		return nil, err
	}
	return DeriveRealmBounds(limit, s.threshold(), in, s.allowInsecure())
}
