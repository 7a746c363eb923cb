package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

func (d *testDevice) setDrop(f func(protocol.Type) bool) { d.mu.Lock(); d.drop = f; d.mu.Unlock() }

// versionsAt lists what each realm holds, by a probe that counts nothing.
func (f *realmFixture) versionsAt(t *testing.T) map[string][]protocol.VersionState {
	t.Helper()
	out := map[string][]protocol.VersionState{}
	for _, r := range f.realms {
		rc, err := r.protocolRealm().Probe(context.Background())
		if err != nil {
			continue
		}
		for _, v := range rc.Versions {
			if v.Status != protocol.VersionEmpty {
				out[r.name] = append(out[r.name], v)
			}
		}
	}
	return out
}

func committedOnly(vs []protocol.VersionState, hash []byte) bool {
	for _, v := range vs {
		if string(v.ManifestHash) == string(hash) && v.Status == protocol.VersionCommitted {
			return true
		}
	}
	return false
}

// Review R1: realm C is compromised and signs "registered" for W, then
// discards it (its host restores its files); the host drops B's put. The
// client holds signed receipts from A and C, t of them, and must not
// commit: C2 wants W at every realm. With C then stopped, the old password
// still recovers from A and B. It fails on the draft's C2 (commit at t).
func TestChangeWithALyingRealmNeverDropsTolerance(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("old", 20)
	oldHash, _, _ := f.cfg.Realms.Version.decode()
	restoreC := f.realms[2].store.Snapshot()
	f.realms[1].dev.setDrop(func(t protocol.Type) bool { return t == protocol.TypeRealmSession })
	rep, err := f.set().ChangePassword(context.Background(), []byte("old"), []byte("new"))
	if err != nil {
		t.Fatalf("change: %v", err)
	}
	if rep.CommitSent || rep.Done {
		t.Fatalf("committed with W signed at 2 of 3 realms: %+v", rep)
	}
	if want := "the new password is registered at A and C; the change waits for B"; !strings.Contains(rep.Summary(), want) {
		t.Errorf("summary %q lacks %q", rep.Summary(), want)
	}
	if !strings.Contains(rep.Summary(), "both passwords work until it is finished: `coffer password change --resume`") {
		t.Errorf("summary %q", rep.Summary())
	}
	// C discards what it signed; then C is gone for good.
	f.realms[2].rollBack(t, restoreC)
	f.realms[2].dev.setDown(true)
	f.realms[1].dev.setDrop(nil)
	held := f.versionsAt(t)
	for _, name := range []string{"A", "B"} {
		if !committedOnly(held[name], oldHash) {
			t.Fatalf("realm %s lost the old version: %+v", name, held[name])
		}
	}
	rec, err := f.set().Recover(context.Background(), []byte("old"))
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("with the lying realm stopped, the old password: %v", err)
	}
}

// F18 with a lying realm: two devices change the password at once from the
// same version, each with one realm unreachable, and realm C signs both
// devices' versions. Honest A and B each hold only one of them, so neither
// device reaches every realm, neither commits, and with C stopped the old
// password recovers with A and B; nothing either device resumes later
// commits a version not held everywhere.
func TestTwoDevicesChangingAtOnceWithALyingRealm(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("old", 20)
	oldHash, _, _ := f.cfg.Realms.Version.decode()
	one, two := newDevice(t, f.cfg), newDevice(t, f.cfg)
	restoreC := f.realms[2].store.Snapshot()

	f.realms[1].dev.setDown(true) // device one cannot reach B
	_, err := one.run(t, f, -1, false, func(s *RealmSet) error {
		rep, err := s.ChangePassword(context.Background(), []byte("old"), []byte("new one"))
		if err == nil && rep.CommitSent {
			t.Errorf("device one committed: %s", rep.Summary())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.realms[1].dev.setDown(false)
	f.realms[2].rollBack(t, restoreC) // C signed W2 and forgets it, to sign W3 too

	f.realms[0].dev.setDown(true) // device two cannot reach A
	_, err = two.run(t, f, -1, false, func(s *RealmSet) error {
		rep, err := s.ChangePassword(context.Background(), []byte("old"), []byte("new two"))
		if err == nil && rep.CommitSent {
			t.Errorf("device two committed: %s", rep.Summary())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.realms[0].dev.setDown(false)
	f.realms[2].rollBack(t, restoreC)

	// Both resume with every realm up: A holds W2 pending, B W3 pending;
	// neither can be put at the other's realm (V3), so neither commits.
	for i, d := range []*device{one, two} {
		d.run(t, f, -1, false, func(s *RealmSet) error {
			rep, err := s.ChangePassword(context.Background(), []byte("old"), nil)
			if rep != nil && rep.CommitSent {
				t.Errorf("device %d committed on resume: %s", i+1, rep.Summary())
			}
			if err != nil && !errors.Is(err, ErrChangeWaits) {
				t.Errorf("device %d resume: %v", i+1, err)
			}
			return nil
		})
	}
	held := f.versionsAt(t)
	for _, name := range []string{"A", "B"} {
		if !committedOnly(held[name], oldHash) || len(held[name]) != 2 {
			t.Fatalf("realm %s: %+v, want the old version committed beside one pending", name, held[name])
		}
	}
	if string(held["A"][1].ManifestHash) == string(held["B"][1].ManifestHash) {
		t.Fatal("A and B hold the same pending version: the two changes did not race")
	}
	f.realms[2].dev.setDown(true)
	for _, d := range []*device{one, two} {
		if pw, err := f.recovers(t, d, k, "old"); err != nil || pw != "old" {
			t.Fatalf("with the lying realm stopped: %v", err)
		}
	}
}

// Review R7: realm C is down during the change; W waits, named, with both
// passwords working. When C is back, `password change --resume` delivers
// W's material to C from the resume blob and commits everywhere; a burned
// realm gets it by open registration.
func TestChangeResumesAtARealmThatWasDown(t *testing.T) {
	for _, burned := range []bool{false, true} {
		f := newRealmFixture(t, 2, 3, realmOptions{})
		k := f.register("old", 20)
		dev := newDevice(t, f.cfg)
		f.realms[2].dev.setDown(true)
		var rep *ChangeReport
		if _, err := dev.run(t, f, -1, false, func(s *RealmSet) (err error) {
			rep, err = s.ChangePassword(context.Background(), []byte("old"), []byte("new"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		want := "the new password is registered at A and B; the change waits for C (C unreachable); both passwords work until it is finished: `coffer password change --resume`"
		if rep.CommitSent || rep.Summary() != want {
			t.Fatalf("with C down: %q, want %q", rep.Summary(), want)
		}
		if dev.config(t).Realms.Change == nil || dev.config(t).Realms.Change.State != "put" {
			t.Fatal("the waiting change is not on the device")
		}
		f.realms[2].dev.setDown(false)
		if burned {
			// The host burns C's record with L wrong evaluations.
			f.burn(t, f.realms[2])
		}
		if _, err := dev.run(t, f, -1, false, func(s *RealmSet) (err error) {
			rep, err = s.ChangePassword(context.Background(), []byte("old"), nil)
			return err
		}); err != nil {
			t.Fatalf("resume (burned %v): %v\n%+v", burned, err, rep)
		}
		if !rep.Done || rep.Summary() != "change complete at 3 of 3 realms; your key survives the loss of 1 realm" {
			t.Fatalf("resume (burned %v): %s", burned, rep.Summary())
		}
		f.finished(t, dev, k, "after the resume")
		if burned {
			if o := f.versionsAt(t)["C"]; o[0].Origin != protocol.OriginOverBurned {
				t.Errorf("C's version origin %d, want over a burned record", o[0].Origin)
			}
		}
	}
}

// burn is the host burning a realm's record: counted evaluations of random
// inputs, each ticket thrown away with a wrong tag, until it is a
// tombstone.
func (f *realmFixture) burn(t *testing.T, r *testRealm) {
	t.Helper()
	ctx := context.Background()
	body, err := protocol.ParseManifest(mustManifest(t, f.cfg))
	if err != nil {
		t.Fatal(err)
	}
	p := r.protocolRealm()
	for range 64 {
		rc, err := p.Probe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rc.State == protocol.RealmLocked {
			return
		}
		var vid []byte
		for _, v := range rc.Versions {
			if v.Status != protocol.VersionEmpty {
				vid = v.VersionID
			}
		}
		blind, err := realmkey.NewBlind(realmkey.Input(body.SetID, []byte("a guess")))
		if err != nil {
			t.Fatal(err)
		}
		e, err := p.Evaluate(ctx, vid, blind.Blinded(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Handle) != 0 {
			p.UnlockWithTag(ctx, &e.Ticket, make([]byte, 32), make([]byte, 32))
		}
	}
	t.Fatalf("realm %s is not burned after 64 evaluations", r.name)
}

func mustManifest(t *testing.T, cfg *Config) []byte {
	_, m, err := cfg.Realms.Version.decode()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// claim makes realm r's host rewrite every probe receipt with edit and
// re-sign it with the realm's key: a compromised realm saying what it
// likes about its state.
func (r *testRealm) claim(t *testing.T, edit func(rc *protocol.RealmReceipt)) {
	r.dev.mu.Lock()
	defer r.dev.mu.Unlock()
	r.dev.rewrite = func(typ protocol.Type, request, reply []byte) []byte {
		if typ != protocol.TypeRealmProbe {
			return reply
		}
		var req protocol.RealmRequest
		if err := protocol.Decode(request, typ, &req); err != nil {
			return reply
		}
		var body protocol.RealmProbe
		_, secret, err := protocol.OpenRealmRequest(r.hpke, typ, &req, &body)
		if err != nil {
			return reply
		}
		var rr protocol.RealmReply
		var inner protocol.RealmReceiptReply
		if protocol.Decode(reply, typ, &rr) != nil || secret.OpenReply(&rr, &inner) != nil {
			return reply
		}
		rc, err := inner.Receipt.Verify(r.signing.Public().(ed25519.PublicKey))
		if err != nil {
			t.Errorf("claiming host: %v", err)
			return reply
		}
		edit(rc)
		if inner.Receipt, err = protocol.SignRealmReceipt(r.signing, rc); err != nil {
			t.Errorf("claiming host: %v", err)
			return reply
		}
		sealed, err := secret.SealReply(rand.Reader, &inner)
		if err != nil {
			return reply
		}
		out, _ := protocol.Encode(typ, sealed)
		return out
	}
}

// A compromised realm that signs "the new version is committed here" about
// this device's own change, which it never committed, must not make the
// device commit where C2 does not hold: C3 counts only the device's own
// recorded commit_sent. Here B lacks W (its host dropped the put), C
// claims W committed alone; a resume must leave A holding the old version,
// so that with C stopped the old password still recovers from A and B.
func TestAClaimedCommitIsNotCommitSent(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("old", 20)
	oldHash, _, _ := f.cfg.Realms.Version.decode()
	dev := newDevice(t, f.cfg)
	f.realms[1].dev.setDrop(func(t protocol.Type) bool { return t == protocol.TypeRealmSession })
	if _, err := dev.run(t, f, -1, false, changeOp); err != nil {
		t.Fatal(err)
	}
	ch := dev.config(t).Realms.Change
	if ch == nil || ch.CommitSent {
		t.Fatalf("the change should wait for B: %+v", ch)
	}
	wHash, _ := hex.DecodeString(ch.ManifestHash)
	f.realms[2].claim(t, func(rc *protocol.RealmReceipt) {
		for i := range rc.Versions {
			if string(rc.Versions[i].ManifestHash) == string(wHash) {
				rc.Versions[i].Status = protocol.VersionCommitted
			} else {
				rc.Versions[i] = protocol.EmptyVersionState()
			}
		}
	})
	dev.run(t, f, -1, false, func(s *RealmSet) error {
		rep, err := s.ChangePassword(context.Background(), []byte("old"), nil)
		if rep != nil && rep.CommitSent {
			t.Errorf("a realm's claim made the device commit: %s", rep.Summary())
		}
		return err
	})
	if a := f.versionsAt(t)["A"]; !committedOnly(a, oldHash) {
		t.Fatalf("A lost the old version: %+v", a)
	}
	f.realms[1].dev.setDrop(nil)
	f.realms[2].dev.setDown(true)
	if _, err := f.recovers(t, dev, k, "old"); err != nil {
		t.Fatalf("with the claiming realm stopped: %v", err)
	}
}
