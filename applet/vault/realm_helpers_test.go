package vault

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// realmSet is n in-process vaults serving one account each, and a version
// registered at all of them.
type realmSet struct {
	t       testing.TB
	vaults  []*harness
	realms  []*realmtest.Realm
	version *realmtest.Version
	anchor  ed25519.PrivateKey
}

func (h *harness) realm(user string) *realmtest.Realm {
	return &realmtest.Realm{RoundTrip: realmtest.RoundTrip(h.roundTrip), Identity: h.v.Identity(), UserID: []byte(user)}
}

// newRealmSet starts n vaults, each with its own account id for the user,
// and registers a t-of-n version of password with limit L at every one.
func newRealmSet(t testing.TB, n, threshold int, password string, limit uint) *realmSet {
	t.Helper()
	s := newRealmSetUnregistered(t, n, threshold, password, limit)
	if err := s.version.RegisterAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// newRealmSetUnregistered is newRealmSet before the registrations.
func newRealmSetUnregistered(t testing.TB, n, threshold int, password string, limit uint) *realmSet {
	t.Helper()
	s := &realmSet{t: t}
	for i := range n {
		h := newHarness(t, Options{})
		s.vaults = append(s.vaults, h)
		s.realms = append(s.realms, h.realm("account-at-realm-"+itoa(i+1)))
	}
	anchor, err := realmkey.AnchorKey(newBackupKey(t), bytes.Repeat([]byte{7}, protocol.SetIDSize))
	if err != nil {
		t.Fatal(err)
	}
	s.anchor = anchor
	ver, err := realmtest.NewVersion(s.realms, []byte(password), realmtest.VersionOptions{Threshold: threshold, Limit: limit,
		SetID: bytes.Repeat([]byte{7}, protocol.SetIDSize), Anchor: anchor})
	if err != nil {
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

// randomBlinded is a blinded element of a random input: what an operator
// guessing passwords sends.
func randomBlinded(t testing.TB) []byte {
	t.Helper()
	b, err := realmkey.NewBlind(newBackupKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Wipe()
	return b.Blinded()
}

// evaluate sends one evaluation of a random element to realm i.
func (s *realmSet) evaluate(i int) (*realmtest.Evaluation, error) {
	return s.realms[i-1].Evaluate(context.Background(), s.version.ID(), randomBlinded(s.t), s.version.ManifestHash, i)
}

// operatorEvaluations sends n guesses to realm i and returns how many were
// answered with an evaluation. The operator cannot make a tag, so it uses
// each ticket up with a wrong one (which also keeps it within its quota).
func (s *realmSet) operatorEvaluations(i, n int) int {
	s.t.Helper()
	got := 0
	for range n {
		e, err := s.evaluate(i)
		if err != nil {
			s.t.Fatalf("operator evaluation at %d: %v", i, err)
		}
		if e.Receipt.Kind == protocol.RealmReceiptAttempt {
			got++
			s.wrongTag(i, &e.Ticket)
		}
	}
	return got
}

// wrongTag uses a ticket up with a guessed tag, as an operator must.
func (s *realmSet) wrongTag(i int, t *realmtest.Ticket) {
	s.t.Helper()
	_, err := s.realms[i-1].Unlock(context.Background(), t, newBackupKey(s.t))
	if protocol.CodeOf(err) != protocol.CodeAuthentication {
		s.t.Fatalf("a guessed tag at %d: %v", i, err)
	}
}

// userTicket is an evaluation the user makes at realm i, whose ticket the
// user can unlock.
func (s *realmSet) userTicket(i int) *realmtest.Ticket {
	s.t.Helper()
	e, err := s.evaluate(i)
	if err != nil || e.Receipt.Kind != protocol.RealmReceiptAttempt {
		s.t.Fatalf("user evaluation at %d: %v", i, err)
	}
	return &e.Ticket
}

// unlock unlocks t at realm i with the version's unlock key.
func (s *realmSet) unlock(i int, t *realmtest.Ticket) (*realmtest.Session, error) {
	return s.realms[i-1].Unlock(context.Background(), t, s.version.UnlockKeys[i-1])
}

// sessionByChallenge opens a session at realm i on ver without counting.
func (s *realmSet) sessionByChallenge(i int, ver *realmtest.Version) *realmtest.Session {
	s.t.Helper()
	ctx := context.Background()
	t, err := s.realms[i-1].Challenge(ctx, protocol.PurposeSession, ver.ID())
	if err != nil || t.Handle == nil {
		s.t.Fatalf("challenge at %d: %v", i, err)
	}
	sess, err := s.realms[i-1].Unlock(ctx, t, ver.UnlockKeys[i-1])
	if err != nil {
		s.t.Fatalf("unlock at %d: %v", i, err)
	}
	return sess
}

// newVersion deals another version for the same realms and set.
func (s *realmSet) newVersion(password string, limit uint, edit func(*protocol.ManifestBody)) *realmtest.Version {
	s.t.Helper()
	ver, err := realmtest.NewVersion(s.realms, []byte(password), realmtest.VersionOptions{
		Threshold: int(s.version.Body.Threshold), Limit: limit, SetID: s.version.SetID, Anchor: s.anchor, Edit: edit,
		Sequence: s.version.Body.Sequence + 1, Parent: s.version.ID()})
	if err != nil {
		s.t.Fatal(err)
	}
	return ver
}

func tagFor(unlockKey, handle, nonce []byte) []byte { return realmkey.Tag(unlockKey, handle, nonce) }

// commitAt commits ver at realm i in a session opened by a challenge, and
// returns the session.
func (s *realmSet) commitAt(i int, ver *realmtest.Version) *realmtest.Session {
	s.t.Helper()
	sess := s.sessionByChallenge(i, ver)
	if _, err := sess.Commit(context.Background(), ver.ID()); err != nil {
		s.t.Fatalf("commit at %d: %v", i, err)
	}
	return sess
}

// versionsAt describes realm i's committed versions as id → status.
func (s *realmSet) versionsAt(i int) map[string]protocol.VersionStatus {
	s.t.Helper()
	out := map[string]protocol.VersionStatus{}
	if c := s.committedRealm(i); c != nil {
		for _, sv := range c.Versions {
			out[string(sv.VersionID)] = sv.Status
		}
	}
	return out
}

// realmTicketHandle keeps a ticket's handle and nonce.
type realmTicketHandle struct{ handle, nonce []byte }

func (h *realmTicketHandle) ticket() *realmtest.Ticket {
	return &realmtest.Ticket{Handle: h.handle, Nonce: h.nonce}
}
