package client

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// Realm B's host holds B's keys (a compromised realm) and answers the
// evaluation with another share's element under a valid signature. The
// client names B, writes the evidence, falls back to C (one more
// evaluation) and recovers K. With B and C both lying, the error names both
// and says 2 were needed and 1 answered.
func TestLyingRealmIsNamed(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	f.realms[1].lie(t, false)
	rec, err := f.recover("pw")
	if err != nil {
		t.Fatalf("one lying realm of 2 of 3: %v", err)
	}
	if !rec.Key.Equal(k) {
		t.Fatal("another key")
	}
	b := rec.Realms[1]
	if !b.Lying || b.Evidence == "" || b.Unlocked {
		t.Fatalf("realm B not named as lying: %+v", b)
	}
	if _, err := os.Stat(b.Evidence); err != nil {
		t.Fatalf("evidence file: %v", err)
	}
	if got := f.evaluations(); got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Errorf("evaluations %v, want one at each realm (B's failure cost one more, at C)", got)
	}
	if !strings.Contains(rec.Summary(), "realm B: LYING") {
		t.Errorf("summary %q", rec.Summary())
	}

	f.realms[2].lie(t, false)
	_, err = f.recover("pw")
	var qe *QuorumError
	if !errors.As(err, &qe) || len(qe.Lying()) != 2 {
		t.Fatalf("two lying realms: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"2 of 3 realms needed", "1 answered",
		"realm B returned an evaluation that does not match its registered key share (evidence saved in ",
		"realm C returned an evaluation that does not match its registered key share (evidence saved in "} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

// The evidence of a lying realm checks out offline for anyone with the
// realm's provisioning key, and nothing a client can do to an honest
// realm's answer, or to the evidence, makes evidence that checks out.
func TestLyingRealmEvidenceIsCheckableAndUnforgeable(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.register("pw", 10)
	f.realms[1].lie(t, false)
	rec, err := f.recover("pw")
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(rec.Realms[1].Evidence)
	if err != nil {
		t.Fatal(err)
	}
	found, err := CheckEvidence(file, f.realms[1].provisioning)
	if err != nil {
		t.Fatalf("the lying realm's evidence does not check: %v", err)
	}
	if !bytes.Equal(found.RealmKey, f.realms[1].dev.v.Identity().SigningKey) || !errors.Is(found.Reason, realmkey.ErrProof) || found.Identity.Name != "B" {
		t.Errorf("finding %+v", found)
	}
	if _, err := CheckEvidence(file, f.realms[0].provisioning); !errors.Is(err, ErrNotEvidence) {
		t.Errorf("under another realm's provisioning key: %v", err)
	}
	ev, err := ParseEvidence(file)
	if err != nil {
		t.Fatal(err)
	}
	tamper := func(name string, edit func(e *Evidence)) {
		e := *ev
		edit(&e)
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CheckEvidence(b, nil); !errors.Is(err, ErrNotEvidence) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 1; return c }
	tamper("receipt body", func(e *Evidence) { e.ReceiptBody = flip(e.ReceiptBody, 40) })
	tamper("another index", func(e *Evidence) { e.Index = 1 })
	tamper("evaluation", func(e *Evidence) { e.Evaluated = f.realms[0].dev.v.Identity().SigningKey })
	tamper("blinded element", func(e *Evidence) { e.Blinded = e.Evaluated })
	tamper("handle", func(e *Evidence) { e.Handle = flip(e.Handle, 0) })
	tamper("manifest", func(e *Evidence) { e.Manifest = flip(e.Manifest, len(e.Manifest)-1) })

	// An honest realm's signed answer: a client that wants to frame realm
	// A can only send it real blinded elements, and A's signature covers
	// what it answered, which verifies.
	manifest, hash := ev.Manifest, protocol.ManifestHash(ev.Manifest)
	body, _ := protocol.ParseManifest(manifest)
	a := f.realms[0].protocolRealm()
	blind, err := realmkey.NewBlind(realmkey.Input(body.SetID, []byte("a guess")))
	if err != nil {
		t.Fatal(err)
	}
	honest, err := a.Evaluate(context.Background(), body.VersionID, blind.Blinded(), hash, 1)
	if err != nil {
		t.Fatal(err)
	}
	framed := &Evidence{Format: EvidenceFormat, ReceiptBody: honest.Signed.Body, ReceiptSignature: honest.Signed.Signature, Manifest: manifest,
		Index: 1, Blinded: blind.Blinded(), Evaluated: honest.Evaluated, Proof: honest.Proof, Handle: honest.Handle}
	b, _ := framed.Marshal()
	if _, err := CheckEvidence(b, nil); !errors.Is(err, ErrNotEvidence) || !strings.Contains(err.Error(), "the evaluation verifies") {
		t.Errorf("an honest answer as evidence: %v", err)
	}
	framed.Evaluated = ev.Evaluated // B's wrong element under A's receipt
	b, _ = framed.Marshal()
	if _, err := CheckEvidence(b, nil); !errors.Is(err, ErrNotEvidence) {
		t.Errorf("an honest receipt over another element: %v", err)
	}
	framed.Evaluated, framed.Proof = honest.Evaluated, ev.Proof // A's element with another proof
	b, _ = framed.Marshal()
	if _, err := CheckEvidence(b, nil); !errors.Is(err, ErrNotEvidence) {
		t.Errorf("an honest receipt over another proof: %v", err)
	}
}

// Every try costs exactly t counted evaluations, right or wrong, at t
// distinct realms, never all n.
func TestExactlyTEvaluationsPerTry(t *testing.T) {
	f := newRealmFixture(t, 3, 5, realmOptions{})
	k := f.register("pw", 9)
	before := f.evaluations()
	if sum(before) != 0 {
		t.Fatalf("registration evaluated: %v", before)
	}
	for i, pw := range []string{"wrong", "pw", "wrong again", "pw"} {
		prev := f.evaluations()
		rec, err := f.recover(pw)
		if (pw == "pw") != (err == nil) {
			t.Fatalf("try %d (%q): %v", i, pw, err)
		}
		if err == nil && !rec.Key.Equal(k) {
			t.Fatal("another key")
		}
		now := f.evaluations()
		got := 0
		for j := range now {
			d := now[j] - prev[j]
			if d > 1 {
				t.Errorf("try %d evaluated %d times at realm %d", i, d, j)
			}
			got += d
		}
		if got != 3 {
			t.Errorf("try %d (%q) made %d evaluations, want exactly t = 3 (per realm %v → %v)", i, pw, got, prev, now)
		}
	}
}

// failEvaluations makes realm r's host answer every evaluation with an
// error after the vault counted it: the reply is lost.
func (r *testRealm) failEvaluations() {
	r.dev.mu.Lock()
	defer r.dev.mu.Unlock()
	r.dev.rewrite = func(typ protocol.Type, _, reply []byte) []byte {
		if typ != protocol.TypeRealmEvaluate {
			return reply
		}
		return protocol.EncodeError(protocol.Errorf(protocol.CodeOutcomeUnknown, "dropped by the host"))
	}
}

// With every realm answering, the realm with the fewest tries left is never
// asked; when one of the chosen fails, exactly one more is asked, once.
func TestFallbackEvaluatesOneMoreRealmOnlyOnFailure(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	if _, err := f.recover("nope"); err == nil {
		t.Fatal("wrong password accepted")
	}
	// Now A 4, B 4, C 5: the next try picks C and A.
	rec, err := f.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatal(err)
	}
	if got := f.evaluations(); got[0] != 2 || got[1] != 1 || got[2] != 1 {
		t.Errorf("evaluations %v, want [2 1 1]: C and A, never B, with no failure", got)
	}
	f.realms[0].failEvaluations()
	rec, err = f.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("with A's replies lost: %v", err)
	}
	if got := f.evaluations(); got[0] != 3 || got[1] != 2 || got[2] != 2 {
		t.Errorf("evaluations %v, want [3 2 2]: A and B first (5, 5 and C 5: configuration order), A failed, so C once more", got)
	}
	if rec.Realms[0].Err == nil || rec.Realms[0].Lying {
		t.Errorf("realm A's lost reply: %+v", rec.Realms[0])
	}
}

// A realm answering the identity element (with a valid signature) is named
// as lying, never combined; one device configured twice is refused before
// any realm request is sent, so its share can never be counted for two
// indices.
func TestClientRefusesIdentityAndDuplicateIndices(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	f.realms[0].lie(t, true)
	rec, err := f.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("with A answering the identity: %v", err)
	}
	if !rec.Realms[0].Lying {
		t.Fatalf("realm A answered the identity and was not named: %+v", rec.Realms[0])
	}
	file, _ := os.ReadFile(rec.Realms[0].Evidence)
	if found, err := CheckEvidence(file, f.realms[0].provisioning); err != nil || !errors.Is(found.Reason, realmkey.ErrIdentity) {
		t.Errorf("identity evidence: %v", err)
	}

	g := newRealmFixture(t, 2, 3, realmOptions{})
	twice := g.realms[0].entry()
	twice.Name = "A again"
	g.cfg.Realms.Set[2] = twice
	_, err = g.set().Register(context.Background(), []byte("pw"), randomKey(t), 10)
	if err == nil || !strings.Contains(err.Error(), "the same device") {
		t.Fatalf("one device twice: %v", err)
	}
	for typ := protocol.TypeRealmProbe; typ <= protocol.TypeRealmSession; typ++ {
		if n := g.realms[0].dev.count(typ); n != 0 {
			t.Errorf("%d %s requests reached the device configured twice", n, typ)
		}
	}
	if err := g.cfg.Validate(); err == nil || !strings.Contains(err.Error(), "same device") {
		t.Errorf("the configuration with one device pinned twice validates: %v", err)
	}
}

// The hosts register their own version at every realm, for the user's
// accounts, signed by an anchor of their own, and serve its manifest. The
// user's device, which pinned its anchor, names it and evaluates nothing.
func TestPinnedDeviceNeverEvaluatesAVersionItsAnchorDidNotSign(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	var pr []*realmtest.Realm
	for _, r := range f.realms {
		pr = append(pr, r.protocolRealm())
	}
	theirs, err := realmtest.NewVersion(pr, []byte("pw"), realmtest.VersionOptions{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := theirs.RegisterAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.realms {
		c, _ := NewConn(r.url, r.token, nil)
		if err := c.PutManifest(context.Background(), theirs.Manifest); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := f.set().Register(context.Background(), []byte("pw"), randomKey(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Committed || len(rep.Missing) != 3 || !strings.Contains(rep.Realms[0].Err.Error(), "already holds a live key") {
		t.Fatalf("registration over the hosts' version: %+v", rep)
	}
	_, err = f.recover("pw")
	if err == nil || !strings.Contains(err.Error(), "a version your key did not make is held at realms A, B and C") {
		t.Fatalf("recovery against the hosts' version: %v", err)
	}
	if got := f.evaluations(); sum(got) != 0 {
		t.Fatalf("the device evaluated the hosts' version: %v", got)
	}

	// A fresh device with a set code that is not this version's refuses it
	// too; without any, it refuses to choose.
	fresh := newRealmFixture(t, 2, 3, realmOptions{})
	fresh.realms = f.realms
	fresh.useLogOf(f)
	for i, r := range f.realms {
		fresh.cfg.Realms.Set[i] = r.entry()
	}
	fresh.opts.SetCode = "AAAAAAAAAAAAAAAA"
	if _, err := fresh.recover("pw"); err == nil || !strings.Contains(err.Error(), "a version your key did not make") {
		t.Fatalf("fresh device, wrong set code: %v", err)
	}
	fresh.opts.SetCode = ""
	if _, err := fresh.recover("pw"); !errors.Is(err, ErrNoAnchor) {
		t.Fatalf("fresh device, no set code: %v", err)
	}
	if got := f.evaluations(); sum(got) != 0 {
		t.Fatalf("a fresh device evaluated the hosts' version: %v", got)
	}
}

// A fresh device given the set code recovers, and pins the anchor and
// version it opened.
func TestFreshDeviceRecoversWithSetCode(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	fresh := newRealmFixture(t, 2, 3, realmOptions{})
	fresh.realms = f.realms
	fresh.useLogOf(f)
	for i, r := range f.realms {
		fresh.cfg.Realms.Set[i] = r.entry()
	}
	fresh.opts.SetCode = strings.ToLower(f.cfg.Realms.SetCode())
	rec, err := fresh.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("fresh device with the set code: %v", err)
	}
	if fresh.cfg.Realms.Anchor != f.cfg.Realms.Anchor || fresh.cfg.Realms.SetID != f.cfg.Realms.SetID ||
		fresh.cfg.Realms.Version.ManifestHash != f.cfg.Realms.Version.ManifestHash {
		t.Errorf("the fresh device did not pin what it opened: %+v", fresh.cfg.Realms)
	}
}

// A realm's store rolled back (with its vault rebooted on the old copy) is
// caught by the store-sequence tripwire of that realm, named, and left out;
// the other two recover.
func TestRealmRollbackIsCaughtPerRealm(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	restore := f.realms[0].store.Snapshot()
	if _, err := f.recover("wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	f.realms[0].rollBack(t, restore)
	rec, err := f.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("with A rolled back: %v", err)
	}
	var rb *RollbackError
	if !errors.As(rec.Realms[0].Err, &rb) || rec.Realms[0].Evaluated {
		t.Errorf("realm A rolled back, reported %+v", rec.Realms[0])
	}
}
