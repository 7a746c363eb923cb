package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
)

// Register at 2 of 3 real realms, recover K with the password, and see the
// configuration keep what the next run checks against.
func TestRealmRegisterAndRecover(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("correct horse", 10)
	rc := f.cfg.Realms
	if rc.PerRealm != 5 || rc.Limit != 10 || rc.SetID == "" || rc.Anchor == "" || rc.Version == nil || len(rc.SetCode()) != 16 {
		t.Fatalf("configuration after registration: %+v", rc)
	}
	for _, e := range rc.Set {
		if e.BundleHash == "" || e.Account == "" || e.LastReceipt == nil || e.LastReceipt.Kind != "status" || e.HighestStoreSequence == 0 {
			t.Errorf("realm %s not pinned: %+v", e.Name, e)
		}
	}
	if err := f.cfg.Validate(); err != nil {
		t.Fatalf("the configuration a registration leaves does not validate: %v", err)
	}
	rec, err := f.recover("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Key.Equal(k) {
		t.Fatal("recovered another key")
	}
	if rec.TriesLeft != 7 || rec.Failed != 0 {
		t.Errorf("after a clean recovery: %d tries left across the realms, %d failed; want 7, 0", rec.TriesLeft, rec.Failed)
	}
	unlocked := 0
	for _, r := range rec.Realms {
		if r.Err != nil || !r.HoldsAgreed {
			t.Errorf("realm %s: %+v", r.Name, r)
		}
		if r.Unlocked {
			unlocked++
		}
	}
	if unlocked != 3 {
		t.Errorf("%d realms confirmed an unlock, want all 3 (the third by a challenge)", unlocked)
	}
	// Confirmed: every realm is back at its full L.
	st, err := f.set().Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Recoverable || st.Tolerance != 1 || st.TriesLeft != 7 || st.SetCode != rc.SetCode() {
		t.Errorf("status after recovery: %+v", st)
	}
	for _, r := range st.Realms {
		if r.TriesLeft != 5 || r.FailedSinceSuccess != 0 {
			t.Errorf("realm %s after a confirmed recovery: %d tries left, %d failed", r.Name, r.TriesLeft, r.FailedSinceSuccess)
		}
	}
}

// A wrong password costs exactly t counted evaluations, says the tries left
// across the realms, and a right one afterwards shows the failure.
func TestRealmWrongPassword(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("right", 10)
	_, err := f.recover("wrong")
	var wp *WrongPasswordError
	if !errors.As(err, &wp) {
		t.Fatalf("wrong password: %v", err)
	}
	// A and B (ties in configuration order) evaluated: 4, 4, 5 → 6 tries.
	if wp.TriesLeft != 6 || !strings.Contains(err.Error(), "wrong password; 6 tries left across the realms (A 4, B 4, C 5)") {
		t.Errorf("message %q", err)
	}
	rec, err := f.recover("right")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("right password after a wrong one: %v", err)
	}
	// C (5 left) and one of A, B evaluated this time.
	if f.realms[2].dev.count(protocol.TypeRealmEvaluate) != 1 {
		t.Errorf("the realm with the most tries left was not chosen: evaluations %v", f.evaluations())
	}
	if rec.Failed != 2 {
		t.Errorf("failed evaluations shown after the wrong try: %d, want 2 (one at A, one at B)", rec.Failed)
	}
}

// One realm down: the other two recover. Two down: the error says how
// many were needed, how many answered and why each other failed.
func TestRealmRecoveryWithRealmsDown(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	f.realms[0].dev.setDown(true)
	rec, err := f.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("with realm A down: %v", err)
	}
	if rec.Realms[0].Reachable || rec.Realms[0].Err == nil {
		t.Errorf("realm A down but reported %+v", rec.Realms[0])
	}
	f.realms[1].dev.setDown(true)
	_, err = f.recover("pw")
	var qe *QuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("two down: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"2 of 3 realms needed", "1 answered", "realm A did not answer", "realm B did not answer"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if sum(f.evaluations()) != 2 {
		t.Errorf("evaluations %v: a try that cannot reach t realms must not evaluate anywhere", f.evaluations())
	}
}

// Rule C2 at registration: with realm C down, the version is registered at
// A and B and left pending (nothing is committed, C is named); with Force
// it is committed at A and B, with the lower tolerance said, and recovers.
func TestRegisterWaitsForEveryRealmUnlessForced(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	// C must be pinned once to be listed in the manifest.
	if _, err := f.set().Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.realms[2].dev.setDown(true)
	rep, err := f.set().Register(context.Background(), []byte("pw"), randomKey(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Committed || len(rep.Missing) != 1 || rep.Missing[0] != "C" || !rep.Realms[0].Registered || !rep.Realms[1].Registered || rep.Realms[0].Committed {
		t.Fatalf("with C down: %+v", rep)
	}
	if !strings.Contains(rep.Summary(), "waits for C") {
		t.Errorf("summary %q", rep.Summary())
	}
	for _, r := range f.realms[:2] {
		if n := r.dev.count(protocol.TypeRealmSession); n != 0 {
			t.Errorf("realm %s got %d session commands: a commit was sent below n without --force", r.name, n)
		}
	}

	g := newRealmFixture(t, 2, 3, realmOptions{})
	if _, err := g.set().Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.realms[2].dev.setDown(true)
	g.opts.Force = true
	k := randomKey(t)
	rep, err = g.set().Register(context.Background(), []byte("pw"), k, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Committed || rep.Tolerance != 0 || !rep.Realms[0].Committed || !rep.Realms[1].Committed || rep.Realms[2].Committed {
		t.Fatalf("forced with C down: %+v", rep)
	}
	if want := "your key survives the loss of 0 realms (a realm that lies counts as lost) until C has it"; !strings.Contains(rep.Summary(), want) {
		t.Errorf("summary %q lacks %q", rep.Summary(), want)
	}
	g.opts.Force = false
	g.realms[2].dev.setDown(false)
	rec, err := g.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("recovery of a forced registration: %v", err)
	}
	if c := rec.Realms[2]; c.HoldsAgreed || c.Err == nil || c.Err.Error() != "it holds no key for this account" {
		t.Errorf("realm C, back without the key, reported %+v", c)
	}
}

// Insecure realms are refused without --insecure, realm by realm, before
// anything is registered.
func TestInsecureRealmRefusedWithoutAllowInsecure(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{insecure: true})
	f.cfg.AllowInsecure = false
	_, err := f.set().Register(context.Background(), []byte("pw"), randomKey(t), 10)
	if err == nil || !strings.Contains(err.Error(), "INSECURE") {
		t.Fatalf("insecure realms without --insecure: %v", err)
	}
	if f.cfg.Realms.SetID != "" {
		t.Error("a refused registration left a set id")
	}
	f.opts.AllowInsecure = true
	rep, err := f.set().Register(context.Background(), []byte("pw"), randomKey(t), 10)
	if err != nil || !rep.Committed || !rep.Bounds.NoBound {
		t.Fatalf("with --insecure, three insecure realms of 2 of 3: %v, %+v", err, rep)
	}
}

// Without the test override, the schedule stretches with Argon2id
// (realmkey.NewSchedule): a set registered that way recovers that way, and
// not with the tests' fast stand-in.
func TestRealmRealStretching(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.opts.stretch = nil
	k := f.register("pw", 10)
	rec, err := f.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("recovery with Argon2id: %v", err)
	}
	f.opts.stretch = realmtest.FastStretch
	var wp *WrongPasswordError
	if _, err := f.recover("pw"); !errors.As(err, &wp) {
		t.Fatalf("recovery of an Argon2id version with another stretching: %v", err)
	}
}
