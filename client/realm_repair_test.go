package client

import (
	"context"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// TestRepairReplacesARealm (REALMS.md 13.3): realm C dies; repair moves the
// key onto A, B and a new realm D with the same password. The new set
// recovers with any one of its realms removed and C gone; C, unreachable,
// keeps its old share, which the report says, offering key rotation. In
// the second case C is still reachable (replaced, not dead) and B was
// burned by its host: B gets the new version by open registration over its
// tombstone, C's old record is deleted, and nothing of the old version is
// left anywhere.
func TestRepairReplacesARealm(t *testing.T) {
	for _, cReachable := range []bool{false, true} {
		f := newRealmFixture(t, 2, 3, realmOptions{})
		k := f.register("pw", 10)
		d := newTestRealm(t, "D", realmOptions{})
		f.logRealm(d)
		c := f.realms[2]
		if cReachable {
			f.burn(t, f.realms[1])
		} else {
			c.dev.setDown(true)
		}
		newSet := []*RealmEntry{{Name: "A"}, {Name: "B"}, d.entry()}
		rep, err := f.set().Repair(context.Background(), []byte("pw"), newSet, 0, 0)
		if err != nil {
			t.Fatalf("repair (C reachable %v): %v", cReachable, err)
		}
		if !rep.Done || !strings.HasPrefix(rep.Summary(), "repair complete at 3 of 3 realms; your key survives the loss of 1 realm") {
			t.Fatalf("repair (C reachable %v): %s\n%+v", cReachable, rep.Summary(), rep)
		}
		rc := f.cfg.Realms
		if len(rc.Set) != 3 || rc.Set[2].Name != "D" || rc.Retiring != nil || rc.Change != nil || rc.Threshold != 2 {
			t.Fatalf("configuration after the repair: %+v", rc)
		}
		if err := f.cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		note := "repair cannot erase the old share at C"
		if cReachable == strings.Contains(rep.Summary(), note) || cReachable != rep.Erased {
			t.Errorf("C reachable %v, erased %v, summary %q", cReachable, rep.Erased, rep.Summary())
		}
		if !cReachable && !strings.Contains(rep.Summary(), "rotate the key: `coffer key rotate`") {
			t.Errorf("summary %q does not offer key rotation", rep.Summary())
		}
		// The new set, C gone for good, survives the loss of any one realm.
		c.dev.setDown(true)
		g := &realmFixture{t: t, realms: []*testRealm{f.realms[0], f.realms[1], d}, cfg: f.cfg, opts: f.opts}
		dev := newDevice(t, f.cfg)
		g.tolerant(t, dev, k, "after the repair", "pw")
		c.dev.setDown(false)
		held := f.versionsAt(t)["C"]
		if cReachable && len(held) != 0 {
			t.Errorf("C still holds %+v after a repair that reached it", held)
		}
		if !cReachable && len(held) != 1 {
			t.Errorf("C, dead during the repair, holds %+v", held)
		}
		if cReachable {
			if b := g.versionsAt(t)["B"]; len(b) != 1 || b[0].Origin != protocol.OriginOverBurned {
				t.Errorf("B, burned, holds %+v", b)
			}
		}
	}
}
