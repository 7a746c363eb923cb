package client

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
)

// A password change with every realm up: W is put and committed at all
// three, the new password recovers the same K, the old one no longer does,
// and the configuration holds no change.
func TestRealmChangePassword(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	k := f.register("old", 10)
	rep, err := f.set().ChangePassword(context.Background(), []byte("old"), []byte("new"))
	if err != nil {
		t.Fatalf("change: %v", err)
	}
	if !rep.Done || !rep.Erased || rep.Tolerance != 1 {
		t.Fatalf("change with every realm up: %+v\n%s", rep, rep.Summary())
	}
	if want := "change complete at 3 of 3 realms; your key survives the loss of 1 realm"; rep.Summary() != want {
		t.Errorf("summary %q, want %q", rep.Summary(), want)
	}
	if f.cfg.Realms.Change != nil {
		t.Errorf("a finished change left %+v", f.cfg.Realms.Change)
	}
	rec, err := f.recover("new")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("new password: %v", err)
	}
	var wp *WrongPasswordError
	if _, err := f.recover("old"); !errors.As(err, &wp) {
		t.Fatalf("old password after a complete change: %v", err)
	}
}

// A delete with every realm up erases the key everywhere, keeps each
// realm's signed deleted receipt (what lets the totals start again, 6.3),
// and afterwards the password opens nothing.
func TestRealmDelete(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.register("pw", 10)
	rep, err := f.set().Delete(context.Background(), []byte("pw"))
	if err != nil || !rep.Erased || !rep.Done {
		t.Fatalf("delete: %v %+v", err, rep)
	}
	if rep.Summary() != "your key is deleted at all 3 realms" {
		t.Errorf("summary %q", rep.Summary())
	}
	for i, e := range f.cfg.Realms.Set {
		b, err := base64.StdEncoding.DecodeString(e.Deleted)
		var sr protocol.SignedRealmReceipt
		if err != nil || protocol.Unmarshal(b, &sr) != nil {
			t.Fatalf("realm %s kept no deleted receipt: %q", e.Name, e.Deleted)
		}
		rc, err := sr.Verify(f.realms[i].dev.v.Identity().SigningKey)
		if err != nil || rc.Kind != protocol.RealmReceiptDeleted || rc.State != protocol.RealmNoRecord {
			t.Fatalf("realm %s: kept receipt %+v (%v)", e.Name, rc, err)
		}
	}
	if f.cfg.Realms.Version != nil || f.cfg.Realms.Change != nil {
		t.Errorf("after an erased delete the configuration holds %+v", f.cfg.Realms)
	}
	if _, err := f.recover("pw"); err == nil {
		t.Fatal("the password recovers after the delete")
	}
}

// The change with real Argon2id (no test stretching): the new version is
// stretched as versions in use are, and opens only that way.
func TestRealmChangePasswordRealStretching(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.opts.stretch = nil
	k := f.register("old", 10)
	rep, err := f.set().ChangePassword(context.Background(), []byte("old"), []byte("new"))
	if err != nil || !rep.Done {
		t.Fatalf("change with Argon2id: %v %+v", err, rep)
	}
	rec, err := f.recover("new")
	if err != nil || !rec.Key.Equal(k) {
		t.Fatalf("new password with Argon2id: %v", err)
	}
	f.opts.stretch = realmtest.FastStretch
	var wp *WrongPasswordError
	if _, err := f.recover("new"); !errors.As(err, &wp) {
		t.Fatalf("the new version opened with another stretching: %v", err)
	}
}
