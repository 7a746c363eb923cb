package vault

import (
	"context"
	"testing"
)

// Attack: the operator spends limit − 1 evaluations, the user's next one is
// the final ticket, and its unlock revives the record. The user's
// confirmation then releases every evaluation counted before it, so the
// unlocked receipt must show all of the operator's: a release of an
// evaluation the user was never shown is an unseen guess.
func TestRealmAttackRevivalShowsEveryReleasedEvaluation(t *testing.T) {
	ctx := context.Background()
	for limit := uint(2); limit <= 4; limit++ {
		s := newRealmSet(t, 3, 2, "pw", limit)
		guesses := s.operatorEvaluations(1, int(limit-1))
		final := s.userTicket(1)
		sess, err := s.unlock(1, final)
		if err != nil {
			t.Fatalf("limit %d: the final ticket did not revive: %v", limit, err)
		}
		if got := sess.Receipt.FailedSinceSuccess; got != uint(guesses) {
			t.Errorf("limit %d: the unlocked receipt shows %d failed evaluations, the operator made %d", limit, got, guesses)
		}
		if _, err := sess.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if c := s.committedRealm(1); c.counter() != 0 {
			t.Fatalf("limit %d: the confirmation left %d counted", limit, c.counter())
		}
	}
}
