package client

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// hostGuesses makes n counted evaluations at realm r as the user's account,
// as its operator can (any request as any client), each with a random
// blinded element, and uses each ticket up with a guessed tag.
func hostGuesses(t *testing.T, r *testRealm, n int) {
	t.Helper()
	ctx := context.Background()
	p := r.protocolRealm()
	st, err := p.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := st.Versions[0]
	for range n {
		in := make([]byte, 32)
		rand.Read(in)
		b, err := realmkey.NewBlind(in)
		if err != nil {
			t.Fatal(err)
		}
		e, err := p.Evaluate(ctx, v.VersionID, b.Blinded(), v.ManifestHash, int(v.Index))
		b.Wipe()
		if err != nil || e.Receipt.Kind != protocol.RealmReceiptAttempt {
			t.Fatalf("host guess: %v", err)
		}
		key := make([]byte, 32)
		rand.Read(key)
		if _, err := p.Unlock(ctx, &e.Ticket, key); protocol.CodeOf(err) != protocol.CodeAuthentication {
			t.Fatalf("host guess's tag: %v", err)
		}
	}
}

// Attack: the operator of realm C lets the user's probe through, then,
// before the recovery's challenge reaches C, makes two counted guesses
// there. The recovery challenges C (it was not among the t evaluated),
// unlocks and confirms, which releases every evaluation counted before the
// challenge: the two guesses included. The recovery must show them (per
// realm and in F, the passwords that may have been tried), or they were
// released unseen.
func TestRealmAttackGuessesBetweenProbeAndChallengeAreShown(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.register("correct horse", 10)
	c := f.realms[2]
	done := false
	c.dev.mu.Lock()
	c.dev.rewrite = func(typ protocol.Type, request, reply []byte) []byte {
		if typ == protocol.TypeRealmProbe && !done {
			done = true
			hostGuesses(t, c, 2)
		}
		return reply
	}
	c.dev.mu.Unlock()
	rec, err := f.recover("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	rc := rec.Realms[2]
	if !rc.Unlocked || rc.Evaluated {
		t.Fatalf("realm C: unlocked %v, evaluated %v; the test wants it challenged and confirmed", rc.Unlocked, rc.Evaluated)
	}
	if rc.FailedSinceSuccess < 2 || rec.Failed < 2 {
		t.Errorf("the confirmation at C released 2 guesses; the recovery shows %d failed there and F = %d\n%s",
			rc.FailedSinceSuccess, rec.Failed, rec.Summary())
	}
}

// Attack: at registration, once realm A has stored the new version pending,
// its operator makes two counted guesses against it before the client's
// commit arrives. The commit's session is opened by a challenge whose ticket
// counts everything before it, so its confirmation releases the guesses. The
// registration must show them, or they were released unseen (and the next
// recovery starts from a clean count).
func TestRealmAttackGuessesBeforeTheCommitAreShown(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	a := f.realms[0]
	done := false
	a.dev.mu.Lock()
	a.dev.rewrite = func(typ protocol.Type, request, reply []byte) []byte {
		if typ == protocol.TypeRealmRegister && !done {
			done = true
			hostGuesses(t, a, 2)
		}
		return reply
	}
	a.dev.mu.Unlock()
	rep, err := f.set().Register(context.Background(), []byte("correct horse"), randomKey(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if !done || !rep.Committed {
		t.Fatalf("the test wants the guesses made and the version committed: %s", rep.Summary())
	}
	st, err := a.protocolRealm().Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.FailedSinceSuccess != 0 || st.AttemptsTotal != 2 {
		t.Fatalf("realm A after the commit: %d attempts, %d held; want 2 attempts, all released", st.AttemptsTotal, st.FailedSinceSuccess)
	}
	sum := rep.Summary()
	if !strings.Contains(sum, "2 evaluations") || !strings.Contains(sum, "A") {
		t.Errorf("the commit at A released 2 guesses the registration does not show:\n%s", sum)
	}
}
