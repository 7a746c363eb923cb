package vault

import (
	"context"
	mrand "math/rand/v2"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/protocol"
)

// N1: when a realm reads a share to evaluate, the evaluation is already
// committed: the committed attempts total covers every evaluation made,
// this one included, so a power cut right then cannot forget it.
func TestRealmEvaluationIsCountedBeforeTheShareIsRead(t *testing.T) {
	const limit = 4
	s := newRealmSet(t, 3, 2, "pw", limit)
	made := uint64(0)
	s.vaults[0].v.onRealmEvaluate = func([]byte) {
		made++
		if c := s.committedRealm(1); c.Attempts < made {
			t.Errorf("evaluation %d reads the share with %d attempts committed", made, c.Attempts)
		}
	}
	if got := s.operatorEvaluations(1, 2*limit); got != limit {
		t.Fatalf("%d evaluations answered, limit %d", got, limit)
	}
	if made != limit {
		t.Fatalf("the share was read %d times, limit %d", made, limit)
	}
}

// N1 under power cuts: commits fail at random and the power is cut; an
// evaluation whose count did not commit is never answered, and over the
// whole run the evaluations answered never exceed the limit.
func TestRealmPowerCutsNeverGiveAFreeEvaluation(t *testing.T) {
	const limit = 5
	for run := range 20 {
		s := newRealmSet(t, 2, 2, "pw", limit)
		h := s.vaults[0]
		rng := mrand.New(mrand.NewPCG(uint64(run), 11))
		answered := uint64(0)
		for range 30 {
			cut := rng.IntN(3) == 0
			h.store.FailCommit = func() error {
				if cut {
					return memstore.ErrPowerCut
				}
				return nil
			}
			e, err := s.evaluate(1)
			if cut && err != nil {
				wantCode(t, err, protocol.CodeUnavailable)
				h.powerCut()
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if cut && e.Receipt.Kind != protocol.RealmReceiptLocked {
				t.Fatalf("run %d: an evaluation was answered although its count did not commit", run)
			}
			if e.Receipt.Kind == protocol.RealmReceiptAttempt {
				s.wrongTag(1, &e.Ticket)
				answered++
				if c := s.committedRealm(1); c.Attempts < answered {
					t.Fatalf("run %d: %d evaluations answered, %d committed", run, answered, c.Attempts)
				}
			}
			if rng.IntN(4) == 0 {
				h.powerCut()
			}
		}
		if answered > limit {
			t.Fatalf("run %d: %d evaluations answered, limit %d", run, answered, limit)
		}
	}
}

// The withheld-unlock attack (SPEC.md's withheld KE3, for realms): the
// operator relays the user's evaluation, keeps the user's unlock, burns the
// record with its own evaluations, then delivers the kept unlock. It must
// find the record locked: only the final ticket, the operator's own here,
// could revive it, and the operator cannot make its tag.
func TestRealmWithheldUnlockCannotReviveABurnedRecord(t *testing.T) {
	const limit = 3
	s := newRealmSet(t, 3, 2, "pw", limit)
	user := s.userTicket(1)
	guesses := s.operatorEvaluations(1, limit)
	_, err := s.unlock(1, user)
	wantCode(t, err, protocol.CodeLocked)
	guesses += s.operatorEvaluations(1, 2*limit)
	if guesses > limit-1 {
		t.Fatalf("the operator had %d evaluations besides the user's one, limit %d", guesses, limit)
	}
	if c := s.committedRealm(1); c.live() {
		t.Fatalf("the record came back with %d tries left", c.triesLeft())
	}
}

// The dropped-confirmation attack: the operator delivers the user's unlock
// but drops the reply, so the user never confirms. The unlock must not count
// as a success: the operator's evaluations before and after it, with the
// user's one, stay within the limit.
func TestRealmUnlockTheUserNeverConfirmedIsNotASuccess(t *testing.T) {
	const limit = 3
	s := newRealmSet(t, 3, 2, "pw", limit)
	guesses := s.operatorEvaluations(1, 1)
	if _, err := s.unlock(1, s.userTicket(1)); err != nil {
		t.Fatal(err) // delivered; the session is never used
	}
	guesses += s.operatorEvaluations(1, 2*limit)
	if guesses > limit-1 {
		t.Fatalf("the operator had %d evaluations besides the user's unconfirmed one, limit %d", guesses, limit)
	}
	if c := s.committedRealm(1); c.Successes != 0 {
		t.Fatalf("an unconfirmed unlock counted as a success: %d successes", c.Successes)
	}
}

// A tag opens one ticket once: a replayed unlock finds no ticket, and a
// wrong tag uses its ticket up, so the right tag after it opens nothing.
func TestRealmTagIsSingleUse(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "pw", 5)
	r := s.realms[0]
	tk := s.userTicket(1)
	sent, err := r.Seal(protocol.TypeRealmUnlock, &protocol.RealmUnlock{Handle: tk.Handle,
		Tag: tagFor(s.version.UnlockKeys[0], tk.Handle, tk.Nonce)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.DeliverUnlock(ctx, sent, tk, s.version.UnlockKeys[0]); err != nil {
		t.Fatal(err)
	}
	_, err = r.DeliverUnlock(ctx, sent, tk, s.version.UnlockKeys[0])
	wantCode(t, err, protocol.CodeUnknownHandle)

	tk = s.userTicket(1)
	wrong := tagFor(newBackupKey(t)[:32], tk.Handle, tk.Nonce)
	_, err = r.UnlockWithTag(ctx, tk, s.version.UnlockKeys[0], wrong)
	wantCode(t, err, protocol.CodeAuthentication)
	_, err = s.unlock(1, tk)
	wantCode(t, err, protocol.CodeUnknownHandle)

	// A tag is bound to its ticket's nonce: the right key over another
	// ticket's nonce is wrong.
	a, b := s.userTicket(1), s.userTicket(1)
	_, err = r.UnlockWithTag(ctx, b, s.version.UnlockKeys[0], tagFor(s.version.UnlockKeys[0], a.Handle, b.Nonce))
	wantCode(t, err, protocol.CodeAuthentication)
}

// The final ticket revives the record it burned once, with one try left,
// not a fresh budget: the operator gets one evaluation more, not limit.
func TestRealmFinalTicketRevivesOnce(t *testing.T) {
	ctx := context.Background()
	const limit = 3
	s := newRealmSet(t, 3, 2, "pw", limit)
	guesses := s.operatorEvaluations(1, limit-1)
	final := s.userTicket(1)
	if c := s.committedRealm(1); c.live() {
		t.Fatal("the final evaluation did not commit a tombstone")
	}
	sent, err := s.realms[0].Seal(protocol.TypeRealmUnlock, &protocol.RealmUnlock{Handle: final.Handle,
		Tag: tagFor(s.version.UnlockKeys[0], final.Handle, final.Nonce)})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.realms[0].DeliverUnlock(ctx, sent, final, s.version.UnlockKeys[0])
	if err != nil {
		t.Fatalf("the final ticket did not revive the record: %v", err)
	}
	if c := s.committedRealm(1); !c.live() || c.triesLeft() != 1 || c.Successes != 0 {
		t.Fatalf("revived record: live %v, %d tries left, %d successes; want live with one try left and no success yet",
			c.live(), c.triesLeft(), c.Successes)
	}
	if _, err := s.realms[0].DeliverUnlock(ctx, sent, final, s.version.UnlockKeys[0]); err == nil {
		t.Fatal("the final ticket revived twice")
	}
	// The user never confirms; the operator goes on.
	guesses += s.operatorEvaluations(1, 2*limit)
	if guesses > limit {
		t.Fatalf("the operator had %d evaluations, limit %d", guesses, limit)
	}
	_, err = sess.Status(ctx)
	wantCode(t, err, protocol.CodeLocked)
}

// What the revival's unlock tells the user: the operator guessed once, then
// the user's final evaluation burned the record and its unlock revived it.
// The revival already released the user's own evaluation (watermark one
// past), so the unlocked receipt must still report the operator's guess,
// not subtract the user's evaluation a second time.
func TestRealmRevivalReportsTheOperatorsGuess(t *testing.T) {
	const limit = 2
	s := newRealmSet(t, 3, 2, "pw", limit)
	if got := s.operatorEvaluations(1, 1); got != 1 {
		t.Fatalf("%d operator evaluations answered", got)
	}
	final := s.userTicket(1)
	if c := s.committedRealm(1); c.live() {
		t.Fatal("the user's evaluation did not burn the record")
	}
	sess, err := s.unlock(1, final)
	if err != nil {
		t.Fatalf("the final ticket did not revive the record: %v", err)
	}
	if got := sess.Receipt.FailedSinceSuccess; got != 1 {
		t.Fatalf("the revival's unlocked receipt reports %d failed attempts; the operator made 1", got)
	}
	if got := sess.Receipt.TriesLeft; got != limit {
		t.Fatalf("the revival's unlocked receipt reports %d tries left once confirmed, want %d", got, limit)
	}
}
