package vault

import (
	"context"
	"maps"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
)

// N7: a registration finishes only on the record state its ticket was
// issued on. The operator holds back the user's first register, lets the
// user register again, burns the version to a tombstone, then delivers the
// held register (and replays the one that worked): neither may bring the
// burned version back with a fresh budget.
func TestRealmReplayedRegistrationCannotReviveABurnedVersion(t *testing.T) {
	ctx := context.Background()
	const limit = 3
	s := newRealmSetUnregistered(t, 3, 2, "pw", limit)
	r, material := s.realms[0], s.version.Material(1)
	registerSent := func() *realmtest.Sent {
		tk, err := r.Challenge(ctx, protocol.PurposeRegister, s.version.ID())
		if err != nil {
			t.Fatal(err)
		}
		sent, err := r.Seal(protocol.TypeRealmRegister, &protocol.RealmRegister{Handle: tk.Handle, Material: material})
		if err != nil {
			t.Fatal(err)
		}
		return sent
	}
	held := registerSent()
	delivered := registerSent()
	var reply protocol.RealmReceiptReply
	if err := r.Deliver(ctx, delivered, &reply); err != nil {
		t.Fatal(err)
	}
	guesses := s.operatorEvaluations(1, 2*limit)
	for name, sent := range map[string]*realmtest.Sent{"held back": held, "replayed": delivered} {
		err := r.Deliver(ctx, sent, &reply)
		wantCode(t, err, protocol.CodeUnknownHandle)
		if c := s.committedRealm(1); c.live() {
			t.Fatalf("the %s registration brought the burned version back", name)
		}
	}
	guesses += s.operatorEvaluations(1, 2*limit)
	if guesses > limit {
		t.Fatalf("the operator had %d evaluations of one version, limit %d", guesses, limit)
	}
}

// V3, V4: a pending version leaves a realm only by its own commit followed
// by a later version's commit. A session on the committed version can
// neither put over the pending one nor "commit" itself to erase it.
func TestRealmPendingVersionIsErasedOnlyByACommit(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "old", 5)
	v := s.version
	onV := s.commitAt(1, v)
	w := s.newVersion("new", 5, nil)
	if _, err := onV.PutVersion(ctx, w.Material(1)); err != nil {
		t.Fatal(err)
	}
	want := map[string]protocol.VersionStatus{string(v.ID()): protocol.VersionCommitted, string(w.ID()): protocol.VersionPending}
	check := func(step string) {
		t.Helper()
		if got := s.versionsAt(1); !maps.Equal(got, want) {
			t.Fatalf("%s: realm holds %v, want %v", step, got, want)
		}
	}
	check("after the put")

	_, err := onV.Commit(ctx, v.ID())
	wantCode(t, err, protocol.CodeVersion)
	check("after committing the committed version again")

	x := s.newVersion("newer", 5, nil)
	_, err = s.sessionByChallenge(1, v).PutVersion(ctx, x.Material(1))
	wantCode(t, err, protocol.CodeVersion)
	check("after a put in a session on the committed version")

	// Whoever proves W may put: W is committed first, V erased.
	got, err := s.sessionByChallenge(1, w).PutVersion(ctx, x.Material(1))
	if err != nil {
		t.Fatal(err)
	}
	if held := got.Held(x.ID()); held == nil || held.Origin != protocol.OriginSession {
		t.Fatalf("put receipt %+v", got)
	}
	want = map[string]protocol.VersionStatus{string(w.ID()): protocol.VersionCommitted, string(x.ID()): protocol.VersionPending}
	check("after a put in a session on the pending version")
}

// N10: a session opened on V loses its authority once another session's
// commit erased V: it can no longer put or commit.
func TestRealmSessionOnAnErasedVersionCannotCommit(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "old", 5)
	v := s.version
	deviceA := s.commitAt(1, v)
	deviceB := s.sessionByChallenge(1, v)
	if _, err := deviceB.Status(ctx); err != nil { // confirmed, in use
		t.Fatal(err)
	}
	w := s.newVersion("new", 5, nil)
	if _, err := deviceA.PutVersion(ctx, w.Material(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := deviceA.Commit(ctx, w.ID()); err != nil {
		t.Fatal(err)
	}
	want := map[string]protocol.VersionStatus{string(w.ID()): protocol.VersionCommitted}
	x := s.newVersion("stale device's", 5, nil)
	if _, err := deviceB.PutVersion(ctx, x.Material(1)); err == nil {
		t.Fatal("a session on an erased version put a version")
	}
	if _, err := deviceB.Commit(ctx, w.ID()); err == nil {
		t.Fatal("a session on an erased version committed")
	}
	if got := s.versionsAt(1); !maps.Equal(got, want) {
		t.Fatalf("realm holds %v, want %v", got, want)
	}
}

// V4: a commit that would set a limit the counter already reaches is
// counter-over-limit, and changes nothing.
func TestRealmCommitBelowCounterIsCounterOverLimit(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "old", 5)
	v := s.version
	sess := s.sessionByChallenge(1, v)
	if _, err := sess.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.operatorEvaluations(1, 3); got != 3 {
		t.Fatalf("%d evaluations", got)
	}
	w := s.newVersion("new", 3, nil)
	if _, err := sess.PutVersion(ctx, w.Material(1)); err != nil {
		t.Fatal(err)
	}
	before := s.committedRealm(1)
	_, err := sess.Commit(ctx, w.ID())
	wantCode(t, err, protocol.CodeCounterOverLimit)
	after := s.committedRealm(1)
	if after.Limit != before.Limit || after.counter() != 3 || !maps.Equal(s.versionsAt(1), map[string]protocol.VersionStatus{
		string(v.ID()): protocol.VersionCommitted, string(w.ID()): protocol.VersionPending}) {
		t.Fatalf("the refused commit changed the record: limit %d → %d, counter %d", before.Limit, after.Limit, after.counter())
	}
}
