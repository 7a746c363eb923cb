package client

import (
	"context"
	"errors"
	"testing"
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
