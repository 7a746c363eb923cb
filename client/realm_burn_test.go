package client

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// cutRegistration registers a new key with the realms of down unreachable:
// a first registration that stops before it can commit, as a cut does.
func (f *realmFixture) cutRegistration(t *testing.T, down ...int) []byte {
	t.Helper()
	f.set().Probe(context.Background()) // pins every realm, as init does first
	for _, i := range down {
		f.realms[i].dev.setDown(true)
	}
	rep, err := f.set().Register(context.Background(), []byte("pw"), randomKey(t), 10)
	if err != nil || rep.Committed {
		t.Fatalf("registration with realms %v down: %v, %+v", down, err, rep)
	}
	f.allUp()
	h, _, err := f.cfg.Realms.Version.decode()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// neverAsked is a confirmation that fails the test if a burn asks for it:
// a refused burn refuses before the user is asked.
func neverAsked(t *testing.T) func(string) bool {
	return func(what string) bool {
		t.Errorf("the user was asked to burn although a rule refuses it: %q", what)
		return false
	}
}

// TestBurnClearsAStaleRecord: a first registration is cut with only realm
// A holding its version (1 of 3, t = 2), which nobody can open and which
// refuses any new open registration at A (V1). The device burns A: L = 5
// counted evaluations with random inputs, each in the report and in A's
// signed totals, until A signs its record locked; the configuration forgets
// the abandoned registration, a new one is accepted at all three (over the
// tombstone at A), and the password recovers the new key.
func TestBurnClearsAStaleRecord(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	h := f.cutRegistration(t, 1, 2)
	before := f.realms[0].dev.count(protocol.TypeRealmEvaluate)
	vid := f.realmVersionID(t, h)

	// A holds the version, alone: a new open registration there is refused (V1).
	if vs := f.versionsAt(t); len(vs["A"]) != 1 || len(vs["B"])+len(vs["C"]) != 0 {
		t.Fatalf("after the cut: %+v", vs)
	}
	var asked string
	rep, err := f.set().Burn(context.Background(), "A", func(what string) bool { asked = what; return true })
	if err != nil {
		t.Fatalf("burn: %v", err)
	}
	for _, want := range []string{"Burn realm A?", "version " + hex.EncodeToString(vid[:4]), "up to 5 counted evaluations", "1 of the 3 realms", "threshold 2"} {
		if !strings.Contains(asked, want) {
			t.Errorf("the confirmation %q does not say %q", asked, want)
		}
	}
	if rep.Evaluations != 5 || !rep.Locked || !rep.Forgotten {
		t.Fatalf("burn report: %+v", rep)
	}
	if got := f.realms[0].dev.count(protocol.TypeRealmEvaluate) - before; got != 5 {
		t.Errorf("realm A received %d evaluations, the report says 5", got)
	}
	signed, err := f.realms[0].protocolRealm().Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if signed.State != protocol.RealmLocked || uint64(signed.AttemptsTotal) != rep.AttemptsAfter || rep.AttemptsAfter-rep.AttemptsBefore != 5 {
		t.Errorf("A signs state %d, %d attempts; the report says %d → %d", signed.State, signed.AttemptsTotal, rep.AttemptsBefore, rep.AttemptsAfter)
	}
	if !strings.Contains(rep.Summary(), "5 counted evaluations with random inputs") || !strings.Contains(rep.Summary(), "from 0 to 5") {
		t.Errorf("summary %q", rep.Summary())
	}
	if rc := f.cfg.Realms; rc.SetID != "" || rc.Anchor != "" || rc.Version != nil || rc.Change != nil {
		t.Fatalf("the configuration still names the abandoned registration: %+v", rc)
	}

	// Register again: open registration over A's tombstone (origin 3).
	k := f.register("pw2", 10)
	vs := f.versionsAt(t)
	if len(vs["A"]) != 1 || vs["A"][0].Origin != protocol.OriginOverBurned || vs["A"][0].Status != protocol.VersionCommitted {
		t.Errorf("realm A after registering again: %+v", vs["A"])
	}
	rec, err := f.recover("pw2")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("recover after the burn and a new registration: %v", err)
	}
	// The burn's evaluations stay in A's signed totals.
	if signed, err = f.realms[0].protocolRealm().Probe(context.Background()); err != nil || uint64(signed.AttemptsTotal) < rep.AttemptsAfter {
		t.Errorf("A's signed attempts after the new registration: %v, %v", signed, err)
	}
}

// realmVersionID reads the version id of the manifest with hash h from
// the configuration.
func (f *realmFixture) realmVersionID(t *testing.T, h []byte) []byte {
	vh, m, err := f.cfg.Realms.Version.decode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := protocol.ParseManifest(m)
	if err != nil || string(vh) != string(h) {
		t.Fatal(err)
	}
	return body.VersionID
}

// TestBurnRefusesAVersionHeldByT: rule 2 counts, among the realms the
// version's manifest lists, every one whose signed probe shows it and every
// one that did not answer or that this configuration does not have. A
// version that may be held by t_V may still open, and is never burned.
func TestBurnRefusesAVersionHeldByT(t *testing.T) {
	refused := func(t *testing.T, f *realmFixture, s *RealmSet, want string) {
		t.Helper()
		before := f.realms[0].dev.count(protocol.TypeRealmEvaluate)
		rep, err := s.Burn(context.Background(), "A", neverAsked(t))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("burn: %+v, %v; want an error saying %q", rep, err, want)
		}
		if got := f.realms[0].dev.count(protocol.TypeRealmEvaluate); got != before {
			t.Fatalf("a refused burn sent %d evaluations", got-before)
		}
		if vs := f.versionsAt(t); len(vs["A"]) != 1 {
			t.Fatalf("realm A after a refused burn: %+v", vs["A"])
		}
	}
	t.Run("held by t", func(t *testing.T) {
		f := newRealmFixture(t, 2, 3, realmOptions{})
		f.cutRegistration(t, 2) // A and B hold it: 2 = t
		refused(t, f, f.set(), "may be held by 2 of its 3 realms (A, B)")
	})
	t.Run("a listed realm that does not answer", func(t *testing.T) {
		f := newRealmFixture(t, 2, 3, realmOptions{})
		f.cutRegistration(t, 1, 2) // A alone
		f.realms[1].dev.setDown(true)
		refused(t, f, f.set(), "may be held by 2 of its 3 realms (A, B (did not answer))")
	})
	t.Run("a listed realm this device does not have", func(t *testing.T) {
		f := newRealmFixture(t, 2, 3, realmOptions{})
		f.cutRegistration(t, 1, 2) // A alone
		cfg := *f.cfg
		rc := *f.cfg.Realms
		rc.Set = rc.Set[:2]
		cfg.Realms = &rc
		s, err := OpenRealmSet(&cfg, f.opts)
		if err != nil {
			t.Fatal(err)
		}
		refused(t, f, s, "may be held by 2 of its 3 realms (A, realm 3 of its manifest (not in this configuration))")
	})
	t.Run("its manifest unknown", func(t *testing.T) {
		// Rule 1: a device that does not know the version (the
		// configuration forgot it, and no host serves its manifest)
		// cannot count its holders, and burns nothing.
		f := newRealmFixture(t, 2, 3, realmOptions{})
		h := f.cutRegistration(t, 1, 2)
		for _, e := range f.cfg.Realms.Set {
			conn, err := NewConn(e.Server, e.Token, nil)
			if err != nil {
				t.Fatal(err)
			}
			conn.DeleteManifest(context.Background(), h) // only A's host had it
			if _, err := conn.GetManifest(context.Background(), h); err == nil {
				t.Fatalf("host of %s still serves the manifest", e.Name)
			}
		}
		rc := f.cfg.Realms
		rc.SetID, rc.Anchor, rc.Version, rc.Change = "", "", nil, nil
		refused(t, f, f.set(), "the manifest of version")
	})
}

// TestStaleDeviceDoesNotBurnTheCurrentVersion is review R8: device 1 keeps
// an old configuration (version V1) while device 2 changes the password
// (V2, committed everywhere). The hosts of B and C then restore their
// realms' old files, so this run's probes show V2 at A alone — 1 of 3,
// fewer than t. Rule 2 alone would let device 1 burn A, destroying the
// user's current version at the one realm that kept it; rule 3 refuses
// every version the pinned anchor signed at or above the pinned sequence.
func TestStaleDeviceDoesNotBurnTheCurrentVersion(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.register("old", 10)
	stale := newDevice(t, f.cfg)
	restoreB, restoreC := f.realms[1].store.Snapshot(), f.realms[2].store.Snapshot()
	if _, err := f.set().ChangePassword(context.Background(), []byte("old"), []byte("new")); err != nil {
		t.Fatalf("change on device 2: %v", err)
	}
	h, _, _ := f.cfg.Realms.Version.decode()
	f.realms[1].rollBack(t, restoreB)
	f.realms[2].rollBack(t, restoreC)
	vs := f.versionsAt(t)
	if !committedOnly(vs["A"], h) || committedOnly(vs["B"], h) || committedOnly(vs["C"], h) {
		t.Fatalf("setup: V2 should be at A alone: %+v", vs)
	}
	before := f.realms[0].dev.count(protocol.TypeRealmEvaluate)
	_, err := stale.run(t, f, -1, false, func(s *RealmSet) error {
		_, err := s.Burn(context.Background(), "A", neverAsked(t))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "signed by its anchor, sequence 2, this device's is 1") {
		t.Fatalf("stale device's burn of the current version: %v", err)
	}
	if got := f.realms[0].dev.count(protocol.TypeRealmEvaluate); got != before {
		t.Errorf("a refused burn sent %d evaluations", got-before)
	}
	if vs := f.versionsAt(t); !committedOnly(vs["A"], h) {
		t.Errorf("realm A no longer holds the current version: %+v", vs["A"])
	}
}

// A burn the user declines sends nothing.
func TestBurnDeclinedSendsNothing(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.cutRegistration(t, 1, 2)
	before := f.realms[0].dev.count(protocol.TypeRealmEvaluate)
	_, err := f.set().Burn(context.Background(), "A", func(string) bool { return false })
	if !errors.Is(err, ErrBurnDeclined) {
		t.Fatalf("declined burn: %v", err)
	}
	if got := f.realms[0].dev.count(protocol.TypeRealmEvaluate); got != before {
		t.Errorf("a declined burn sent %d evaluations", got-before)
	}
	if f.cfg.Realms.Change == nil {
		t.Error("a declined burn forgot the registration")
	}
}

// TestBurnThenRegisterAfterBurnRestoresTolerance: a change committed with
// --force while realm C was down leaves C holding only the old version
// (committed, 1 of 3: nothing opens it) and C refusing the new one's open
// registration. C is burned (rule 3 allows it: the old version's sequence
// is below the pinned one), then `coffer password change --resume` delivers
// the user's current password there by open registration over the
// tombstone (RegisterAfterBurn: the forced change is complete, so a repair
// onto the same set), and the set is back at its full tolerance.
func TestBurnThenRegisterAfterBurnRestoresTolerance(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("old", 10)
	c := f.realms[2]
	c.dev.setDown(true)
	f.opts.Force = true
	if _, err := f.set().ChangePassword(context.Background(), []byte("old"), []byte("new")); err != nil {
		t.Fatalf("forced change with C down: %v", err)
	}
	f.opts.Force = false
	c.dev.setDown(false)
	w, _, _ := f.cfg.Realms.Version.decode()
	if held := f.versionsAt(t)["C"]; len(held) != 1 || committedOnly(held, w) {
		t.Fatalf("C after the forced change: %+v", held)
	}
	rep, err := f.set().Burn(context.Background(), "C", func(string) bool { return true })
	if err != nil || !rep.Locked || rep.Evaluations != 5 || rep.Forgotten {
		t.Fatalf("burn of C's old version: %+v, %v", rep, err)
	}
	ch, err := f.set().RegisterAfterBurn(context.Background(), []byte("new"))
	if err != nil {
		t.Fatalf("registration after the burn: %v", err)
	}
	if !ch.Done || f.cfg.Realms.Change != nil {
		t.Fatalf("registration after the burn: %s (%+v)", ch.Summary(), ch)
	}
	w, _, _ = f.cfg.Realms.Version.decode()
	for name, vs := range f.versionsAt(t) {
		if len(vs) != 1 || !committedOnly(vs, w) {
			t.Fatalf("realm %s after the resume: %+v", name, vs)
		}
	}
	if vs := f.versionsAt(t)["C"]; vs[0].Origin != protocol.OriginOverBurned {
		t.Errorf("C's version origin %d, want registered over a burned record", vs[0].Origin)
	}
	f.tolerant(t, newDevice(t, f.cfg), k, "after the burn and resume", "new")
}

// TestBurnTheLastHolderAfterADelete: the user deletes the key while realm
// C is down; A and B erase it, and C, back, is the last holder of a version
// nobody opens any more (1 of 3). The delete under way is the user's word
// that the version goes: rule 3 lets this device burn it, so C no longer
// keeps the share and refuses no later registration.
func TestBurnTheLastHolderAfterADelete(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.register("pw", 10)
	f.realms[2].dev.setDown(true)
	rep, err := f.set().Delete(context.Background(), []byte("pw"))
	if err != nil || rep.Erased {
		t.Fatalf("delete with C down: %+v, %v", rep, err)
	}
	f.allUp()
	if vs := f.versionsAt(t); len(vs["C"]) != 1 || len(vs["A"])+len(vs["B"]) != 0 {
		t.Fatalf("after the delete: %+v", vs)
	}
	burn, err := f.set().Burn(context.Background(), "C", func(string) bool { return true })
	if err != nil || !burn.Locked || burn.Evaluations != 5 {
		t.Fatalf("burn of the last holder after a delete: %+v, %v", burn, err)
	}
	signed, err := f.realms[2].protocolRealm().Probe(context.Background())
	if err != nil || signed.State != protocol.RealmLocked {
		t.Fatalf("C after the burn: %+v, %v", signed, err)
	}
}
