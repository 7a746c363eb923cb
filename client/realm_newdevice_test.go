package client

import (
	"context"
	"strings"
	"testing"
)

// freshDevice is a second device of f's set: the user's realms file (names,
// servers, tokens, provisioning keys) and nothing pinned.
func (f *realmFixture) freshDevice(t *testing.T, threshold int, realms ...*testRealm) *realmFixture {
	t.Helper()
	if realms == nil {
		realms = f.realms
	}
	g := &realmFixture{t: t, realms: realms, opts: f.opts, log: f.log}
	rc := &RealmsConfig{Threshold: threshold}
	for _, r := range realms {
		rc.Set = append(rc.Set, r.entry())
	}
	g.cfg = &Config{Version: ConfigVersion, Mode: ModePassword, Realms: rc}
	g.log.pin(g.cfg)
	g.opts.SetCode = f.cfg.Realms.SetCode()
	return g
}

// The "backs up and restores with any one stopped" holds for a new
// device too: with any one realm down, a device that never reached it
// recovers from the two that answer. The realm stays unpinned (its
// identity could not be fetched); when it answers later it is pinned, with
// the provisioning key check, and matched to the manifest by its key.
func TestNewDeviceRecoversWithAnyOneRealmDown(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	for i, down := range f.realms {
		g := f.freshDevice(t, 2)
		down.dev.setDown(true)
		rec, err := g.recover("pw")
		down.dev.setDown(false)
		if err != nil || !rec.Key.Equal(k) {
			t.Fatalf("new device, realm %s down: %v", down.name, err)
		}
		if e := g.cfg.Realms.Set[i]; e.Vault != nil || e.BundleHash != "" || rec.Realms[i].Reachable || rec.Realms[i].Err == nil {
			t.Fatalf("realm %s was down, yet pinned or reported usable: %+v, %+v", down.name, e, rec.Realms[i])
		}
		if err := g.cfg.Realms.validate(); err != nil {
			t.Fatalf("the configuration the recovery left does not validate: %v", err)
		}
		// Back up: pinned now, and it holds the version a recovery uses.
		rec, err = g.recover("pw")
		if err != nil || !rec.Key.Equal(k) {
			t.Fatalf("new device, realm %s back: %v", down.name, err)
		}
		if e := g.cfg.Realms.Set[i]; e.Vault == nil || e.Vault.SigningKey != f.cfg.Realms.Set[i].Vault.SigningKey || !rec.Realms[i].HoldsAgreed || !rec.Realms[i].Unlocked {
			t.Fatalf("realm %s back: not pinned or not matched: %+v, %+v", down.name, e, rec.Realms[i])
		}
	}
}

// A realm that comes back under another provisioning key than the user's
// file gives is refused, as at first contact: an entry that stayed unpinned
// is no weaker than a new one.
func TestNewDeviceUnpinnedRealmKeepsTheProvisioningCheck(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 10)
	g := f.freshDevice(t, 2)
	f.realms[2].dev.setDown(true)
	if _, err := g.recover("pw"); err != nil {
		t.Fatal(err)
	}
	f.realms[2].dev.setDown(false)
	g.cfg.Realms.Set[2].ProvisioningKey = g.cfg.Realms.Set[0].ProvisioningKey
	rec, err := g.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatal(err)
	}
	if g.cfg.Realms.Set[2].Vault != nil || rec.Realms[2].Err == nil || rec.Realms[2].HoldsAgreed {
		t.Fatalf("realm C under a foreign provisioning key was pinned or used: %+v", rec.Realms[2])
	}
}

// A new device learns the set's bounds from the manifest the anchor signed
// (so `coffer realms` shows them), and a configuration whose threshold or
// number of realms is not the set's is refused, saying what to give.
func TestNewDeviceLearnsTheSetsBounds(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("pw", 20) // 2 of 3: L = 20/2 = 10
	g := f.freshDevice(t, 2)
	rec, err := g.recover("pw")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatal(err)
	}
	if rc := g.cfg.Realms; rc.PerRealm != 10 || rc.Limit != 20 {
		t.Fatalf("new device: limit %d, per realm %d; want 20, 10", rc.Limit, rc.PerRealm)
	}
	b, err := g.set().Bounds(0)
	if err != nil || b.PerRealm != 10 || b.AgainstRealms != 20 {
		t.Fatalf("new device's bounds: %+v, %v", b, err)
	}
	st, err := g.set().Probe(context.Background())
	if err != nil || st.Bounds == nil || st.Bounds.PerRealm != 10 {
		t.Fatalf("coffer realms on the new device: %+v, %v", st, err)
	}

	// 3 of 3 configured, 2 of 3 registered.
	g = f.freshDevice(t, 3)
	if _, err := g.recover("pw"); err == nil || !strings.Contains(err.Error(), "--threshold 2") {
		t.Fatalf("new device configured 3 of 3 for a 2-of-3 set: %v", err)
	}
	// 2 of 2 configured (realm C left out of the file), 2 of 3 registered.
	g = f.freshDevice(t, 2, f.realms[:2]...)
	if _, err := g.recover("pw"); err == nil || !strings.Contains(err.Error(), "lists 3 realms") {
		t.Fatalf("new device configured with 2 of the set's 3 realms: %v", err)
	}
}
