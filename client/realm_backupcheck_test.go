package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// backupOf is an age file encrypted to k's recipient, as `coffer backup`
// writes one.
func backupOf(t *testing.T, k *BackupKey) []byte {
	t.Helper()
	id, err := k.AgeIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("a backup"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *realmFixture) successes(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	for _, r := range f.realms {
		rc, err := r.protocolRealm().Probe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, uint64(rc.SuccessesTotal))
	}
	return out
}

// REALMS.md 5.6: a fresh device with no set code, given one of the user's
// backups, accepts the recovered K only if K opens that backup; then it
// pins the anchor. Given a backup K does not open, it refuses, pins nothing,
// and sends no unlock a host could tell from a wrong password's.
func TestFreshDeviceChecksKAgainstABackup(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)

	other := f.freshDevice(t, 2)
	other.opts.SetCode = ""
	other.opts.CheckKey = KeyOpensBackup(backupOf(t, randomKey(t)))
	before := f.successes(t)
	_, err := other.recover("pw")
	if !errors.Is(err, ErrBackupNotOpened) {
		t.Fatalf("fresh device, a backup of another key: %v", err)
	}
	if rc := other.cfg.Realms; rc.Anchor != "" || rc.SetID != "" || rc.Version != nil {
		t.Fatalf("a K that did not open the backup was followed: %+v", rc)
	}
	if after := f.successes(t); !equalUints(before, after) {
		t.Fatalf("a K that did not open the backup was confirmed at the realms: successes %v, then %v", before, after)
	}

	g := f.freshDevice(t, 2)
	g.opts.SetCode = ""
	g.opts.CheckKey = KeyOpensBackup(backupOf(t, k))
	rec, err := g.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("fresh device with a backup of its key: %v", err)
	}
	if g.cfg.Realms.Anchor != f.cfg.Realms.Anchor || g.cfg.Realms.SetCode() != f.cfg.Realms.SetCode() {
		t.Fatalf("the anchor was not pinned: %+v", g.cfg.Realms)
	}
}

// The attack 5.6 is about: the hosts burn nothing and register their own
// version for a guess p* at every realm (here the realms held no record),
// with an anchor of their own. A fresh device without the set code but
// with a backup evaluates it (it cannot tell), the check matches when the
// user's password is p*, and K' does not open the backup: refused, and the
// realms see a random tag, as for a wrong password — no confirmed success
// that would tell the hosts their guess was right.
func TestFreshDeviceWithABackupRefusesTheHostsVersion(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	var pr []*realmtest.Realm
	for _, r := range f.realms {
		pr = append(pr, r.protocolRealm())
	}
	// Their version wraps a key of theirs, K', under the password p* = "pw",
	// and is signed by K''s anchor, as a client's would be.
	theirK := randomKey(t)
	setID := make([]byte, protocol.SetIDSize)
	rand.Read(setID)
	anchor, err := realmkey.AnchorKey(theirK.Bytes(), setID)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := realmtest.NewVersion(pr, []byte("pw"), realmtest.VersionOptions{Limit: 5, SetID: setID, Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	y, err := theirs.Dealing.Evaluate(realmkey.Input(setID, []byte("pw")))
	if err != nil {
		t.Fatal(err)
	}
	sch, err := realmkey.NewScheduleStretched(y, realmtest.FastStretch(y), theirs.ID(), setID)
	if err != nil {
		t.Fatal(err)
	}
	if theirs.Body.Wrapped, err = protocol.WrapKey(rand.Reader, sch.Export[:], setID, theirK.Bytes()); err != nil {
		t.Fatal(err)
	}
	if theirs.Manifest, err = protocol.SignManifest(anchor, theirs.Body); err != nil {
		t.Fatal(err)
	}
	theirs.ManifestHash = protocol.ManifestHash(theirs.Manifest)
	if err := theirs.RegisterAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.realms {
		c, _ := NewConn(r.url, r.token, nil)
		if err := c.PutManifest(context.Background(), theirs.Manifest); err != nil {
			t.Fatal(err)
		}
	}
	g := f.freshDevice(t, 2)
	g.opts.SetCode = ""
	g.opts.CheckKey = KeyOpensBackup(backupOf(t, randomKey(t)))
	before := f.successes(t)
	_, err = g.recover("pw")
	if !errors.Is(err, ErrBackupNotOpened) {
		t.Fatalf("the hosts' version, guessed right: %v", err)
	}
	if after := f.successes(t); !equalUints(before, after) {
		t.Fatalf("the device confirmed the hosts' version: successes %v, then %v", before, after)
	}
	if g.cfg.Realms.Anchor != "" {
		t.Fatal("the hosts' anchor was pinned")
	}
}

func equalUints(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
