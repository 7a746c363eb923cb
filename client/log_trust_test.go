package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// The adversary holds the provisioning key (or stole it): it signs a
// bundle for a vault it runs, and never logs it. The client refuses it,
// naming the bundle, and pins nothing.
func TestUnloggedBundleRefused(t *testing.T) {
	ctx := context.Background()
	f := newUnloggedFixture(t, fakehost.Options{Name: "rogue"})
	rel := f.log.release(1, "usbarmory", f.host.VaultIdentity().FirmwareHash) // its release is logged; the bundle is not
	si := hostBundle(t, f.host)
	_, err := Connect(ctx, f.cfg, f.opts)
	if !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), BundleHash(si)) || !strings.Contains(err.Error(), `"rogue"`) {
		t.Fatalf("an unlogged bundle: %v", err)
	}
	if f.cfg.BundleHash != "" || f.cfg.Vault != nil {
		t.Fatal("a refused bundle was pinned")
	}
	// Logged, it is accepted, and the client remembers where it found it.
	idx := f.log.bundle(si)
	f.connect()
	if l := f.cfg.Vault.Logged; l == nil || l.BundleIndex != idx || l.ReleaseIndex != rel || l.ReleaseVersion != 1 || l.Board != "usbarmory" {
		t.Fatalf("logged at %+v, want bundle %d release %d", l, idx, rel)
	}
	if f.cfg.Log.View.Size != f.log.l.Size() || f.cfg.Log.Checkpoint == "" {
		t.Fatalf("view at %d of %d", f.cfg.Log.View.Size, f.log.l.Size())
	}
}

// The bundle is logged, but the firmware it names is not a logged release
// (or is one for another board than the bundle claims): refused, naming
// the firmware hash.
func TestUnloggedReleaseRefused(t *testing.T) {
	ctx := context.Background()
	f := newUnloggedFixture(t, fakehost.Options{})
	si, id := hostBundle(t, f.host), f.host.VaultIdentity()
	f.log.bundle(si)
	_, err := Connect(ctx, f.cfg, f.opts)
	if !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), hex.EncodeToString(id.FirmwareHash)) {
		t.Fatalf("an unlogged release: %v", err)
	}
	// The firmware is logged as a software release, but the bundle says
	// the vault is hardware: not its release.
	f.log.release(1, "software", id.FirmwareHash)
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), "software") {
		t.Fatalf("a release for another board: %v", err)
	}
	if f.cfg.BundleHash != "" {
		t.Fatal("a refused bundle was pinned")
	}
	f.log.release(2, "usbarmory", id.FirmwareHash)
	f.connect()
}

// The log's checkpoint is signed by the release key but lacks the quorum
// of witness cosignatures: the log could be showing this client a tree of
// its own. Refused, at first contact and later, and the view stays.
func TestUnwitnessedCheckpointRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	f.log.src.Cosigners = 1
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Fatalf("first contact, one cosignature of two: %v", err)
	}
	if f.cfg.BundleHash != "" || f.cfg.Log.View.Size != 0 {
		t.Fatal("an unwitnessed checkpoint moved the pin or the view")
	}
	f.log.src.Cosigners = 2
	f.connect()
	size := f.cfg.Log.View.Size
	f.log.release(9, "usbarmory", sum256("another release"))
	f.log.src.Cosigners = 0
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Fatalf("later contact, no cosignature: %v", err)
	}
	if f.cfg.Log.View.Size != size {
		t.Fatal("an unwitnessed checkpoint moved the view")
	}
	// --insecure does not make an unwitnessed log a witnessed one.
	f.opts.AllowUnlogged = true
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Fatalf("with AllowUnlogged: %v", err)
	}
}

// The host serves the log, and lies about it: a fork signed with the real
// keys, a revocation hidden by serving another entry in its place. Each is refused, and the view does not move.
func TestLogSourceLiesRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	f.connect()
	id := f.host.VaultIdentity()
	f.log.release(2, "qemu", sum256("qemu build"))
	f.connect()
	saved := f.cfg.Log.View
	savedCP := f.cfg.Log.Checkpoint
	unchanged := func(what string) {
		t.Helper()
		v := f.cfg.Log.View
		if v.Size != saved.Size || !bytes.Equal(v.Root, saved.Root) || f.cfg.Log.Checkpoint != savedCP {
			t.Fatalf("%s moved the view", what)
		}
	}

	// A fork: the same keys (a compromised release key, witnesses that
	// cosign anything) sign another history of the same size.
	fork := releaselogtest.New(t, f.log.l.Origin, 0)
	fork.LogSigner, fork.LogKey, fork.Witnesses, fork.WitnessKeys = f.log.l.LogSigner, f.log.l.LogKey, f.log.l.Witnesses, f.log.l.WitnessKeys
	for i, d := range f.log.l.Entries(0, f.log.l.Size()) {
		if i == int(f.log.l.Size())-1 {
			d, _ = releaselogtest.Release(2, "qemu", sum256("evil")).Marshal()
		}
		fork.AppendData(d)
	}
	opts := f.opts
	opts.LogSource = &releaselogtest.Source{Log: fork, Cosigners: 2}
	if _, err := Connect(ctx, f.cfg, opts); !errors.Is(err, releaselog.ErrInconsistent) {
		t.Fatalf("a fork: %v", err)
	}
	unchanged("a fork")

	// A hidden revocation: the log revokes the vault's release, the host
	// serves another entry in its place.
	f.log.revoke(releaselog.KindRelease, id.FirmwareHash, "key extraction bug")
	f.log.src.Tamper = func(from uint64, e [][]byte) [][]byte {
		e[len(e)-1], _ = releaselogtest.Release(3, "qemu", sum256("harmless")).Marshal()
		return e
	}
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, releaselog.ErrInconsistent) {
		t.Fatalf("a hidden revocation: %v", err)
	}
	unchanged("a hidden revocation")
	// Even --insecure does not get past a log caught lying.
	f.opts.AllowUnlogged = true
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, releaselog.ErrInconsistent) {
		t.Fatalf("a hidden revocation with AllowUnlogged: %v", err)
	}
	unchanged("a hidden revocation with AllowUnlogged")
	f.log.src.Tamper = nil
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("the revocation, served: %v", err)
	}
}

// A revoked release or identity is refused always: with AllowUnlogged and
// AllowInsecure, at first contact (the revocation logged before the client
// pinned anything) and at every later contact, once read.
func TestRevokedRefusedAlways(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		target releaselog.Kind
		hash   func(*fixture) []byte
	}{
		{"release", releaselog.KindRelease, func(f *fixture) []byte { return f.host.VaultIdentity().FirmwareHash }},
		{"identity", releaselog.KindIdentity, func(f *fixture) []byte { return releaselog.BundleHash(hostBundle(t, f.host)) }},
	} {
		t.Run(tc.name+" revoked after pinning", func(t *testing.T) {
			f := newFixture(t, fakehost.Options{Insecure: true})
			f.connect()
			idx := f.log.revoke(tc.target, tc.hash(f), "compromised: "+tc.name)
			f.opts.AllowUnlogged, f.opts.AllowInsecure = true, true
			for range 2 { // the second contact reads no new entry: the revocation is remembered
				_, err := Connect(ctx, f.cfg, f.opts)
				if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), fmt.Sprintf("index %d", idx)) || !strings.Contains(err.Error(), "compromised: "+tc.name) {
					t.Fatalf("revoked %s: %v", tc.name, err)
				}
			}
		})
		t.Run(tc.name+" revoked before first contact", func(t *testing.T) {
			f := newFixture(t, fakehost.Options{Insecure: true})
			f.log.revoke(tc.target, tc.hash(f), "withdrawn")
			f.opts.AllowUnlogged = true
			if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrRevoked) {
				t.Fatalf("revoked %s at first contact: %v", tc.name, err)
			}
			if f.cfg.BundleHash != "" {
				t.Fatal("a revoked bundle was pinned")
			}
		})
	}
}

// --insecure (AllowUnlogged) is the only way past an unlogged vault, it
// says so at every contact, and it is never saved.
func TestAllowUnloggedPassesWithNotice(t *testing.T) {
	ctx := context.Background()
	f := newUnloggedFixture(t, fakehost.Options{Name: "dev box"})
	var notes noticeLog
	f.opts.AllowUnlogged, f.opts.Notice = true, notes.add
	f.connect()
	f.connect()
	if k := notes.kinds(); len(k) != 2 || k[0] != NoticeUnlogged || k[1] != NoticeUnlogged ||
		!strings.Contains(notes.got[0].Text, "INSECURE") || !strings.Contains(notes.got[0].Text, `"dev box"`) {
		t.Fatalf("notices %+v", notes.got)
	}
	if f.cfg.Vault.Logged != nil {
		t.Fatal("an unlogged vault recorded as logged")
	}
	f.opts.AllowUnlogged = false
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrNotLogged) {
		t.Fatalf("without AllowUnlogged: %v", err)
	}
}

// With no policy pinned (an old configuration) a vault cannot be checked:
// refused, saying how to pin one, unless insecure vaults are allowed, and
// then a warning at every contact.
func TestNoPolicyPinned(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	f.cfg.Log = nil
	_, err := Connect(ctx, f.cfg, f.opts)
	if !errors.Is(err, ErrNoLogPolicy) || !strings.Contains(err.Error(), "coffer log pin") {
		t.Fatalf("no policy: %v", err)
	}
	var notes noticeLog
	f.opts.Notice = notes.add
	f.cfg.AllowInsecure = true
	f.connect()
	f.cfg.AllowInsecure, f.opts.AllowInsecure = false, true
	f.connect()
	if k := notes.kinds(); !slices.Equal(k, []NoticeKind{NoticeUnverified, NoticeUnverified}) {
		t.Fatalf("notices %v", k)
	}
}

// An upgrade: the device runs new firmware and is provisioned a new
// bundle for it, its keys stay. Refused while the new release is not
// logged; accepted and shown once the new release (of a higher version)
// and bundle are; the pin moves and the vault keeps working.
func TestUpgradeSameKeysAccepted(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 5)
	oldHash := f.cfg.BundleHash
	f.host.Boot(sum256("release 2"))
	si := f.host.Provision()
	id := *f.host.VaultIdentity()
	bi := f.log.bundle(si)
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), hex.EncodeToString(id.FirmwareHash)) {
		t.Fatalf("an upgrade to an unlogged release: %v", err)
	}
	if f.cfg.BundleHash != oldHash {
		t.Fatal("the pin moved to an unlogged release")
	}
	ri := f.log.l.Append(&releaselog.Entry{Kind: releaselog.KindRelease, Release: &releaselog.Release{Version: 7, Name: "v0.7.0",
		Commit: strings.Repeat("ab", 20), Toolchain: "tamago-go1.26.0", Board: "usbarmory", Firmware: id.FirmwareHash, Applet: sum256("applet")}})
	var notes noticeLog
	f.opts.Notice = notes.add
	f.mustLogin("pw", k).Close(ctx)
	if len(notes.got) != 1 || notes.got[0].Kind != NoticeUpgraded {
		t.Fatalf("notices %+v", notes.got)
	}
	n := notes.got[0]
	for _, want := range []string{"upgraded", "v0.7.0", "version 7", hex.EncodeToString(id.FirmwareHash), fmt.Sprintf("index %d", ri)} {
		if !strings.Contains(n.Text, want) {
			t.Errorf("the upgrade notice %q does not say %q", n.Text, want)
		}
	}
	if f.cfg.BundleHash != BundleHash(si) || f.cfg.Vault.FirmwareHash != hex.EncodeToString(id.FirmwareHash) ||
		f.cfg.Vault.Logged.BundleIndex != bi || f.cfg.Vault.Logged.ReleaseIndex != ri {
		t.Fatalf("the pin did not move: %+v", f.cfg.Vault)
	}
	// Shown once: the next contact is an ordinary one.
	f.connect()
	if len(notes.got) != 1 {
		t.Fatalf("notices %+v", notes.got)
	}
}

// Another device, or the same one with new keys: logged and unrevoked, but
// its keys are not the pinned ones. Refused until the user consents, and
// the consent is shown the old and new keys and both log indexes.
func TestChangedKeysNeedConsent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	f.mustLogin("pw", f.register("pw", 5)).Close(ctx)
	old, oldHash, oldSeq := *f.cfg.Vault, f.cfg.BundleHash, f.cfg.HighestStoreSequence
	f.host.Replace(fakehost.Options{Name: "replacement"})
	_, bi := f.log.vault(hostBundle(t, f.host), f.host.VaultIdentity())
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrBundleChanged) || !strings.Contains(err.Error(), "accept-new-identity") {
		t.Fatalf("new keys: %v", err)
	}
	var shown *IdentityChange
	f.opts.AcceptNewIdentity = func(c *IdentityChange) error { shown = c; return errors.New("the user said no") }
	if _, err := Connect(ctx, f.cfg, f.opts); err == nil || !strings.Contains(err.Error(), "the user said no") || f.cfg.BundleHash != oldHash {
		t.Fatalf("refused consent: %v", err)
	}
	if shown == nil || shown.Old.Signing != old.SigningKey || shown.New.Signing != hex.EncodeToString(f.host.VaultIdentity().SigningKey) ||
		shown.OldLogged == nil || shown.OldLogged.BundleIndex != old.Logged.BundleIndex || shown.NewLogged == nil || shown.NewLogged.BundleIndex != bi {
		t.Fatalf("shown %+v", shown)
	}
	f.opts.AcceptNewIdentity = func(*IdentityChange) error { return nil }
	f.connect()
	// The new store's counters start again: its status's sequence, below
	// the old store's, is no rollback.
	if f.cfg.Vault.Name != "replacement" || f.cfg.Vault.Logged.BundleIndex != bi || f.cfg.HighestStoreSequence >= oldSeq || f.cfg.LastReceipt != nil {
		t.Fatalf("not pinned: %+v (highest sequence %d, was %d)", f.cfg.Vault, f.cfg.HighestStoreSequence, oldSeq)
	}
	// A consent is no way past the log: an unlogged new identity is
	// refused before anyone is asked.
	f.host.Replace(fakehost.Options{Name: "unlogged"})
	shown = nil
	f.opts.AcceptNewIdentity = func(c *IdentityChange) error { shown = c; return nil }
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrNotLogged) || shown != nil {
		t.Fatalf("an unlogged new identity: %v (asked: %v)", err, shown != nil)
	}
}

// A realm set checks every realm's vault against the one release log of
// its configuration: a realm whose bundle is not logged is refused by
// name, the others serve.
func TestRealmUnloggedRefusedByName(t *testing.T) {
	ctx := context.Background()
	f := newRealmFixtureUnlogged(t, 2, 3, realmOptions{}, "C")
	st, err := f.set().Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range st.Realms {
		bad := rr.Name == "C"
		if bad != (rr.Err != nil) || bad && (!errors.Is(rr.Err, ErrNotLogged) || !strings.Contains(rr.Err.Error(), `"C"`)) {
			t.Errorf("realm %s: %v", rr.Name, rr.Err)
		}
	}
	if e := realmByName(f.cfg, "C"); e.BundleHash != "" {
		t.Fatal("the unlogged realm was pinned")
	}
	for _, name := range []string{"A", "B"} {
		if e := realmByName(f.cfg, name); e.Vault == nil || e.Vault.Logged == nil {
			t.Fatalf("realm %s not recorded as logged", name)
		}
	}
	// Logged, then revoked: refused by name all the same.
	f.log.bundle(f.realmByName("C").bundle)
	f.log.revoke(releaselog.KindIdentity, releaselog.BundleHash(f.realmByName("C").bundle), "stolen")
	f.log.release(99, "qemu", sum256("other"))
	if st, err = f.set().Probe(ctx); err != nil {
		t.Fatal(err)
	}
	for _, rr := range st.Realms {
		if bad := rr.Name == "C"; bad != (rr.Err != nil) || bad && !errors.Is(rr.Err, ErrRevoked) {
			t.Errorf("realm %s: %v", rr.Name, rr.Err)
		}
	}
}

func realmByName(cfg *Config, name string) *RealmEntry {
	for _, e := range cfg.Realms.Set {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// A host serving an older, witnessed copy of the log (a realm's mirror
// that lags, or a host withholding newer entries) is no evidence of a
// fork. A vault this device already found in its view is checked against
// that view — its remembered revocations included — and the user told;
// a vault it never found cannot be found there; the view never moves back.
func TestStaleLogCopy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	f.connect()
	id := f.host.VaultIdentity()
	f.log.release(2, "qemu", sum256("qemu build"))
	f.connect()
	saved := f.cfg.Log.View
	savedCP := f.cfg.Log.Checkpoint
	notes := &noticeLog{}
	opts := f.opts
	opts.Notice = notes.add
	opts.LogSource = &rollbackSource{Source: f.log.src, size: saved.Size - 1}
	if _, err := Connect(ctx, f.cfg, opts); err != nil {
		t.Fatalf("a known vault behind an older copy of the log: %v", err)
	}
	if k := notes.kinds(); len(k) != 1 || k[0] != NoticeStaleLog {
		t.Fatalf("notices %+v", notes.got)
	}
	if v := f.cfg.Log.View; v.Size != saved.Size || !bytes.Equal(v.Root, saved.Root) || f.cfg.Log.Checkpoint != savedCP {
		t.Fatal("an older checkpoint moved the view")
	}
	// A revocation this device has seen still refuses the vault behind a
	// copy of the log from before it.
	f.log.revoke(releaselog.KindRelease, id.FirmwareHash, "key extraction bug")
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("the revocation: %v", err)
	}
	opts.LogSource = &rollbackSource{Source: f.log.src, size: saved.Size - 1}
	if _, err := Connect(ctx, f.cfg, opts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a revoked vault behind an older copy of the log: %v", err)
	}
}
