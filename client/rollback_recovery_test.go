package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// rolledBack registers "pw", keeps a copy of the vault's store, logs in
// and makes two wrong guesses, then puts the copy back: the client has
// seen a higher store sequence and more attempts than the vault now
// holds. It returns the key, the rollback to put the copy back again, and
// the configuration as the client had it just before the rollback.
func rolledBack(t *testing.T, f *fixture) (*BackupKey, func(), Config) {
	t.Helper()
	k := registerAccount(f, "pw", 5)
	rollback := f.host.Snapshot()
	if err := f.mustLogin("pw", k).Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := f.login("wrong"); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	rollback()
	return k, rollback, cloneConfig(f.cfg)
}

// registerAccount registers a key as the account's: the configuration's
// age recipient is the key's, as init makes it.
func registerAccount(f *fixture, password string, limit uint) *BackupKey {
	f.t.Helper()
	k := f.register(password, limit)
	r, err := k.AgeRecipient()
	if err != nil {
		f.t.Fatal(err)
	}
	f.cfg.AgeRecipient = r
	return k
}

func cloneConfig(c *Config) Config {
	cc := *c
	if c.LastReceipt != nil {
		r := *c.LastReceipt
		cc.LastReceipt = &r
	}
	return cc
}

// sameTrust fails unless the configuration's trust state is still before's.
func sameTrust(t *testing.T, f *fixture, before Config, what string) {
	t.Helper()
	if f.cfg.HighestStoreSequence != before.HighestStoreSequence || f.cfg.Generation != before.Generation ||
		f.cfg.Limit != before.Limit || !reflect.DeepEqual(f.cfg.LastReceipt, before.LastReceipt) {
		t.Fatalf("%s changed the trust state: highest %d → %d, generation %x → %x, last receipt %+v → %+v", what,
			before.HighestStoreSequence, f.cfg.HighestStoreSequence, before.Generation, f.cfg.Generation, before.LastReceipt, f.cfg.LastReceipt)
	}
}

func wantRollback(t *testing.T, err error, what string) {
	t.Helper()
	var rb *RollbackError
	if !errors.As(err, &rb) {
		t.Fatalf("%s: %v, want a rollback", what, err)
	}
}

// The user's way out of a rollback: shown the vault's fresh signed state,
// they log in to the record it holds now and move the key to a new
// password; from then on the client takes the vault's state as its
// baseline, and a rollback below it is caught again.
func TestRecoverRollback(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	k, _, before := rolledBack(t, f)
	recoveryStart := f.host.Snapshot()
	wantRollback(t, func() error { _, err := f.login("pw"); return err }(), "login after the rollback")

	c := f.connectForRecovery()
	st, err := c.CheckRollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Behind() || st.HighestSeen != before.HighestStoreSequence || st.Current >= st.HighestSeen {
		t.Fatalf("rollback state %+v, this device saw %d", st, before.HighestStoreSequence)
	}
	if _, err := c.RollbackDeclarations(ctx); !errors.Is(err, ErrNoDeclarations) {
		t.Fatalf("declarations from a host that serves none: %v", err)
	}
	sameTrust(t, f, before, "CheckRollback")

	if _, err := c.RecoverRollback(ctx, st, []byte("pw"), []byte("pw")); !errors.Is(err, ErrSamePassword) {
		t.Fatalf("recovery keeping the password: %v", err)
	}
	if _, err := c.RecoverRollback(ctx, st, []byte("not it"), []byte("new password")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("recovery with a wrong password: %v", err)
	}
	sameTrust(t, f, before, "a recovery with a wrong password")
	// The count a recovery's login is made against: the rolled-back
	// record's, with the recovery's wrong password on it; the device's own
	// status still stops at the rollback.
	us, err := c.RollbackUserStatus(ctx, st)
	if err != nil || us.TriesLeft != 4 || us.Limit != 5 || us.FailedSinceSuccess != 1 {
		t.Fatalf("the rolled-back state's count: %+v, %v", us, err)
	}
	sameTrust(t, f, before, "RollbackUserStatus")
	_, err = c.UserStatus(ctx)
	wantRollback(t, err, "UserStatus after RollbackUserStatus")
	if _, err := c.RollbackUserStatus(ctx, &RollbackState{HighestSeen: st.HighestSeen - 1, Current: st.Current}); err == nil {
		t.Fatal("RollbackUserStatus accepted a rollback not read from this client")
	}

	rec, err := c.RecoverRollback(ctx, st, []byte("pw"), []byte("new password"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Receipt.Kind != protocol.ReceiptChanged || rec.Receipt.Generation == before.Generation ||
		f.cfg.Generation != rec.Receipt.Generation || f.cfg.HighestStoreSequence != rec.Receipt.StoreSequence {
		t.Fatalf("after recovery: receipt %+v, configuration generation %x highest %d (before %d)",
			rec.Receipt, f.cfg.Generation, f.cfg.HighestStoreSequence, before.HighestStoreSequence)
	}
	// The rolled-back record has on record only the recovery's own wrong
	// password: the login tried after the rollback stopped at the contact,
	// whose signed status showed the rollback, before any KE1 was sent;
	// and none of the two guesses the rollback undid.
	if rec.Released.FailedSinceSuccess != 1 {
		t.Errorf("the recovery's login was shown %d failed attempts, want 1", rec.Released.FailedSinceSuccess)
	}
	if err := f.mustLogin("new password", k).Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.login("pw"); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("the old password after recovery: %v", err)
	}

	// The tripwire is armed again from the new baseline: putting the state
	// before the recovery back is a rollback again.
	recoveryStart()
	wantRollback(t, func() error { _, err := f.login("new password"); return err }(), "login after a second rollback")
}

// A recovery accepts exactly the state the user was shown, or a later one:
// a host that rolls the store back further between the check and the
// login, or cuts the recovery short, leaves the client stopped with its
// trust state as it was.
func TestRecoveryAcceptsNothingElse(t *testing.T) {
	ctx := context.Background()
	t.Run("rolled back further after the check", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		k := registerAccount(f, "pw", 5)
		older := f.host.Snapshot()
		f.mustLogin("pw", k).Close(ctx)
		f.login("wrong")
		f.login("wrong")
		shown := f.host.Snapshot()
		f.mustLogin("pw", k).Close(ctx)
		f.login("wrong")
		shown() // back by a login and a guess: what the user is shown...
		before := cloneConfig(f.cfg)
		c := f.connectForRecovery()
		st, err := c.CheckRollback(ctx)
		if err != nil || !st.Behind() {
			t.Fatalf("check: %+v, %v", st, err)
		}
		older() // ...and then further back, before the login
		_, err = c.RecoverRollback(ctx, st, []byte("pw"), []byte("new password"))
		wantRollback(t, err, "recovery after a further rollback")
		sameTrust(t, f, before, "the refused recovery")
	})
	t.Run("cut short", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		rolledBack(t, f)
		before := cloneConfig(f.cfg)
		c := f.connectForRecovery()
		st, err := c.CheckRollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sessions := 0
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != protocol.TypeSession {
				return false
			}
			if sessions++; sessions == 2 { // change-finish: the vault acts, the reply is lost
				f.host.Vault(r.Context(), body)
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"error":"lost"}`)
				return true
			}
			return false
		})
		if _, err := c.RecoverRollback(ctx, st, []byte("pw"), []byte("new password")); err == nil {
			t.Fatal("a recovery whose change lost its reply succeeded")
		}
		sameTrust(t, f, before, "the recovery cut short")
		f.host.Intercept(nil)
		wantRollback(t, func() error { _, err := Connect(ctx, f.cfg, f.opts); return err }(), "a contact after the recovery was cut short")
	})
	t.Run("a rollback state read before the configuration changed", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		rolledBack(t, f)
		c := f.connectForRecovery()
		st, err := c.CheckRollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stale := *st
		stale.HighestSeen--
		if _, err := c.RecoverRollback(ctx, &stale, []byte("pw"), []byte("new password")); err == nil || !strings.Contains(err.Error(), "CheckRollback") {
			t.Fatalf("recovery with a rollback state this client did not read: %v", err)
		}
		if _, err := c.RecoverRollback(ctx, nil, []byte("pw"), []byte("new password")); err == nil {
			t.Fatal("recovery without a rollback state")
		}
	})
}

// A host cannot make the client accept a rollback by declaring it: every
// ordinary contact still stops; a declaration that would write to the
// user's terminal is refused.
func TestADeclarationAcceptsNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	rolledBack(t, f)
	before := cloneConfig(f.cfg)
	serve := func(body string) {
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, _ []byte) bool {
			if r.URL.Path != "/v1/rollbacks" {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
			return true
		})
	}
	serve(`{"device":"test","declarations":[{"declared_at":"2026-12-01T09:30:00Z","reason":"restored from last night's backup"}]}`)
	c := f.connectForRecovery()
	d, err := c.RollbackDeclarations(ctx)
	if err != nil || len(d) != 1 || d[0].Reason != "restored from last night's backup" || d[0].DeclaredAt.Year() != 2026 {
		t.Fatalf("declarations: %+v, %v", d, err)
	}
	wantRollback(t, func() error { _, err := c.Status(ctx); return err }(), "status with a declaration served")
	wantRollback(t, func() error { _, err := f.login("pw"); return err }(), "login with a declaration served")
	sameTrust(t, f, before, "a declaration")

	for _, bad := range []string{
		`{"declarations":[{"declared_at":"2026-12-01T09:30:00Z","reason":"fine\u001b[2J\nNo rollback: all is well"}]}`,
		`{"declarations":[{"declared_at":"2026-12-01T09:30:00Z","reason":"` + strings.Repeat("x", MaxDeclarationReason+1) + `"}]}`,
		`{"declarations":[` + strings.Repeat(`{"declared_at":"2026-12-01T09:30:00Z","reason":"x"},`, 10) + `{"declared_at":"2026-12-01T09:30:00Z","reason":"x"}]}`,
		`not json`,
	} {
		serve(bad)
		if d, err := c.RollbackDeclarations(ctx); err == nil {
			t.Errorf("accepted %d declarations from %.60q", len(d), bad)
		}
	}
}

// When the rollback lost the record (the store went back to before the
// registration, or was lost), no password opens anything: the key is gone
// from the vault, and only the 64-digit key, if the user kept it, puts it
// back, behind a new password.
func TestRegisterAfterRollbackWhenTheRecordIsLost(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	empty := f.host.Snapshot()
	k := registerAccount(f, "pw", 4)
	f.mustLogin("pw", k).Close(ctx)
	empty()
	before := cloneConfig(f.cfg)
	c := f.connectForRecovery()
	st, err := c.CheckRollback(ctx)
	if err != nil || !st.Behind() {
		t.Fatalf("check: %+v, %v", st, err)
	}
	if _, err := c.RecoverRollback(ctx, st, []byte("pw"), []byte("new password")); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("recovery of a lost record: %v", err)
	}
	sameTrust(t, f, before, "the recovery of a lost record")
	if _, err := c.RegisterAfterRollback(ctx, st, randomKey(t), []byte("new password"), 0); err == nil || !strings.Contains(err.Error(), "not this account's key") {
		t.Fatalf("registering another key: %v", err)
	}
	sameTrust(t, f, before, "registering another key")
	rec, err := c.RegisterAfterRollback(ctx, st, k, []byte("new password"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Receipt.Kind != protocol.ReceiptRegistered || rec.Receipt.Limit != 4 || f.cfg.Generation != rec.Receipt.Generation ||
		f.cfg.HighestStoreSequence != rec.Receipt.StoreSequence {
		t.Fatalf("after re-registering: %+v, configuration generation %x highest %d", rec.Receipt, f.cfg.Generation, f.cfg.HighestStoreSequence)
	}
	f.mustLogin("new password", k).Close(ctx)

	// While the vault holds a record, the key is not registered over it.
	f2 := newFixture(t, fakehost.Options{})
	k2, _, _ := rolledBack(t, f2)
	c2 := f2.connectForRecovery()
	st2, err := c2.CheckRollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.RegisterAfterRollback(ctx, st2, k2, []byte("new password"), 0); !errors.Is(err, &protocol.Error{Code: protocol.CodeExists}) {
		t.Fatalf("registering over a record the vault holds: %v", err)
	}
}

// FuzzRollbackDeclarations: whatever cofferd sends as its declarations, the
// client keeps at most 10, each a reason of printable text of at most 500
// characters, or refuses the lot.
func FuzzRollbackDeclarations(f *testing.F) {
	for _, s := range []string{
		`{"device":"vault0","declarations":[]}`,
		`{"device":"vault0","declarations":[{"device":"vault0","declared_at":"2026-12-01T09:30:00Z","reason":"restored from last night's backup"}]}`,
		`{"declarations":[{"declared_at":"2026-12-01T09:30:00Z","reason":"a\u001b[2Jb"}]}`,
		`{"declarations":[{"declared_at":"2026-12-01T09:30:00Z","reason":"évité \u202e"}]}`,
		`{"declarations":null}`, `{}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := parseDeclarations(b)
		if err != nil {
			return
		}
		if len(ds) > maxDeclarations {
			t.Fatalf("%d declarations kept", len(ds))
		}
		for _, d := range ds {
			if checkDeclarationReason(d.Reason) != nil || !utf8.ValidString(d.Reason) || utf8.RuneCountInString(d.Reason) > MaxDeclarationReason {
				t.Fatalf("kept the reason %q", d.Reason)
			}
			for _, r := range d.Reason {
				if !strconv.IsPrint(r) {
					t.Fatalf("kept the reason %q with %q in it", d.Reason, r)
				}
			}
		}
	})
}

// connectForRecovery connects as `coffer vault recover-rollback` does: the
// vault is checked as at every contact, but a rollback is left to
// CheckRollback instead of stopping the contact.
func (f *fixture) connectForRecovery() *Client {
	f.t.Helper()
	opts := f.opts
	opts.RecoverRollback = true
	c, err := Connect(context.Background(), f.cfg, opts)
	if err != nil {
		f.t.Fatalf("connect for the recovery: %v", err)
	}
	return c
}
