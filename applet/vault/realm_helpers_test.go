package vault

import (
	"bytes"
	"context"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
)

// realmSet is n in-process vaults serving one account each, and a version
// registered at all of them.
type realmSet struct {
	t       testing.TB
	vaults  []*harness
	realms  []*realmtest.Realm
	version *realmtest.Version
}

func (h *harness) realm(user string) *realmtest.Realm {
	return &realmtest.Realm{RoundTrip: realmtest.RoundTrip(h.roundTrip), Identity: h.v.Identity(), UserID: []byte(user)}
}

// newRealmSet starts n vaults, each with its own account id for the user,
// and registers a t-of-n version of password with limit L at every one.
func newRealmSet(t testing.TB, n, threshold int, password string, limit uint) *realmSet {
	t.Helper()
	s := &realmSet{t: t}
	for i := range n {
		h := newHarness(t, Options{})
		s.vaults = append(s.vaults, h)
		s.realms = append(s.realms, h.realm("account-at-realm-"+itoa(i+1)))
	}
	ver, err := realmtest.NewVersion(s.realms, []byte(password), realmtest.VersionOptions{Threshold: threshold, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	if err := ver.RegisterAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.version = ver
	return s
}

// committedRealm returns realm i's committed record, or nil.
func (s *realmSet) committedRealm(i int) *realmRecord {
	s.t.Helper()
	b, ok := s.vaults[i-1].store.Committed(realmKey(s.realms[i-1].UserID))
	if !ok {
		return nil
	}
	r, err := parseRealmRecord(b)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// recover tries password at the realms of indices and, when it is right,
// unlocks each of them with the unlock key it derives.
func (s *realmSet) recover(password string, indices ...int) (*realmtest.Recovery, []*realmtest.Session, error) {
	s.t.Helper()
	ctx := context.Background()
	rec, err := s.version.Recover(ctx, []byte(password), indices...)
	if err != nil {
		return rec, nil, err
	}
	keys, ok, err := s.version.UnlockKeysFor(rec.Output)
	if err != nil {
		s.t.Fatal(err)
	}
	if !ok {
		return rec, nil, errWrongPassword
	}
	var sessions []*realmtest.Session
	for m, i := range indices {
		sess, err := s.realms[i-1].Unlock(ctx, &rec.Evaluations[m].Ticket, keys[i-1])
		if err != nil {
			return rec, sessions, err
		}
		sessions = append(sessions, sess)
	}
	return rec, sessions, nil
}

type testError string

func (e testError) Error() string { return string(e) }

const errWrongPassword = testError("wrong password")

func wantRealmCode(t testing.TB, err error, code protocol.Code) {
	t.Helper()
	wantCode(t, err, code)
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }
