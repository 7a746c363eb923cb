package client

import (
	"context"
	"fmt"
	"testing"
)

// registerOp is `coffer init --realms` as the library runs it.
func registerOp(key *BackupKey) func(s *RealmSet) error {
	return func(s *RealmSet) error {
		_, err := s.Register(context.Background(), []byte("pw"), key, 20)
		return err
	}
}

// TestRegisterCutAtEveryStep is rule C1 for the first registration: the
// client is cut after each of its messages (with every realm up, and with
// realm C down), the device restarts from the configuration as saved, and
// then:
//   - wherever any realm holds the new version, the saved configuration
//     already knows it (set id, anchor, the version and the change with its
//     resume blob), so the device is never ignorant of what realms hold;
//   - wherever t realms hold it, `coffer password change --resume` from the
//     saved configuration finishes it: every realm holds it committed alone,
//     the device holds no change, and the password recovers K with any one
//     realm removed.
func TestRegisterCutAtEveryStep(t *testing.T) {
	for _, mask := range []int{0, 4} {
		t.Run(fmt.Sprintf("down=%03b", mask), func(t *testing.T) {
			t.Parallel()
			total := -1
			for k := -1; k <= total; k++ {
				if k == 0 || (testing.Short() && k > 0 && k%3 != 0) {
					continue
				}
				f := newRealmFixture(t, 2, 3, realmOptions{})
				key := randomKey(t)
				dev := newDevice(t, f.cfg)
				downs := f.down(mask)
				tr, _ := dev.run(t, f, k, false, registerOp(key))
				if k == -1 {
					total = tr.sent
				}
				f.allUp()
				when := fmt.Sprintf("realms down %s, registration cut after %d of %d messages", downs, k, total)
				held := 0
				for _, vs := range f.versionsAt(t) {
					if len(vs) > 0 {
						held++
					}
				}
				rc := dev.config(t).Realms
				if held > 0 && (rc.SetID == "" || rc.Anchor == "" || rc.Version == nil || (rc.Change == nil && held < 3)) {
					t.Fatalf("%s: %d realms hold the version but the saved configuration does not know it: %+v", when, held, rc)
				}
				if held < 2 {
					continue // fewer than t: nothing recovers it (see registerRestart)
				}
				var rep *ChangeReport
				if _, err := dev.run(t, f, -1, false, func(s *RealmSet) (err error) {
					rep, err = s.ChangePassword(context.Background(), []byte("pw"), nil)
					return err
				}); err != nil {
					t.Fatalf("%s: --resume: %v", when, err)
				}
				if sum := rep.Summary(); sum != "registration complete at 3 of 3 realms; your key survives the loss of 1 realm" &&
					sum != "no unfinished change: nothing to resume; your key survives the loss of 1 realm" {
					t.Fatalf("%s: --resume says %q", when, sum)
				}
				cfg := dev.config(t)
				if cfg.Realms.Change != nil {
					t.Fatalf("%s: resumed, the device still holds a change: %+v", when, cfg.Realms.Change)
				}
				h, _, _ := cfg.Realms.Version.decode()
				for name, vs := range f.versionsAt(t) {
					if len(vs) != 1 || !committedOnly(vs, h) {
						t.Fatalf("%s: resumed, realm %s holds %+v", when, name, vs)
					}
				}
				for _, r := range f.realms {
					r.dev.setDown(true)
					if _, err := f.recovers(t, dev, key, "pw"); err != nil {
						t.Fatalf("%s: resumed, with realm %s removed: %v", when, r.name, err)
					}
					r.dev.setDown(false)
				}
			}
		})
	}
}
