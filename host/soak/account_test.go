package soak

import (
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// The model must catch a vault that counts wrongly. Each case plays a
// history through it in which the vault's receipts break one rule, and
// expects exactly that failure; the honest history expects none.
func TestTheModelCatchesAVaultThatCountsWrongly(t *testing.T) {
	const gen = 1<<63 | 42
	ke1 := []byte("a KE1")
	attempt := func(total, successes uint64, tries, failed uint, seq uint64) *protocol.Receipt {
		return &protocol.Receipt{Kind: protocol.ReceiptAttempt, Generation: gen, Limit: 3, TriesLeft: tries,
			FailedSinceSuccess: failed, StoreSequence: seq, RequestHash: protocol.RequestHash(ke1),
			AttemptsTotal: protocol.Total(total), SuccessesTotal: protocol.Total(successes)}
	}
	locked := func(total uint64, seq uint64, revivable uint64) *protocol.Receipt {
		r := attempt(total, 1, 0, 3, seq)
		r.Kind, r.RevivableMillis = protocol.ReceiptLocked, protocol.Total(revivable)
		return r
	}
	// Honest: a wrong guess, a right one confirmed, three wrong guesses
	// (the last is final and fails), a locked receipt.
	honest := func(a *account, break_ string) {
		a.loginStarted(ke1, []byte("h1"), attempt(1, 0, 2, 0, 2))
		a.loginFinished([]byte("h1"), false, protocol.CodeAuthentication)
		a.loginStarted(ke1, []byte("h2"), attempt(2, 0, 1, 1, 3))
		a.loginFinished([]byte("h2"), true, 0)
		released := &protocol.Receipt{Kind: protocol.ReceiptReleased, Generation: gen, Limit: 3, TriesLeft: 3,
			FailedSinceSuccess: 1, StoreSequence: 3, AttemptsTotal: 2}
		if break_ == "release says the user's own attempt failed" {
			released.FailedSinceSuccess = 2
		}
		a.checkReleased(released)
		a.confirmation([]byte("h2"), true, false)
		seq := uint64(5)
		if break_ == "store sequence goes back" {
			seq = 2
		}
		total := uint64(3)
		if break_ == "a guess answered busy was counted" {
			total = 4 // the vault counted one the driver saw refused
		}
		a.loginStarted(ke1, []byte("h3"), attempt(total, 1, 2, 0, seq))
		a.loginFinished([]byte("h3"), false, protocol.CodeAuthentication)
		if break_ == "locked while live" {
			a.loginStarted(ke1, []byte("h3b"), locked(3, 5, 0))
			return
		}
		if break_ == "a confirmation was not counted" {
			a.loginStarted(ke1, []byte("h4"), attempt(4, 0, 1, 1, 6))
			return
		}
		a.loginStarted(ke1, []byte("h4"), attempt(4, 1, 1, 1, 6))
		a.loginFinished([]byte("h4"), false, protocol.CodeAuthentication)
		a.loginStarted(ke1, []byte("h5"), attempt(5, 1, 0, 2, 7))
		a.loginFinished([]byte("h5"), false, protocol.CodeAuthentication) // the final login fails: erased
		revivable := uint64(0)
		if break_ == "revivable with no final login pending" {
			revivable = 1000
		}
		a.loginStarted(ke1, []byte("h6"), locked(5, 7, revivable))
		if break_ == "a guess counted on a tombstone" {
			a.loginStarted(ke1, []byte("h7"), attempt(6, 1, 0, 3, 8))
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"honest", ""},
		{"a guess answered busy was counted", "total-mismatch"},
		{"store sequence goes back", "store-sequence-backwards"},
		{"a confirmation was not counted", "total-mismatch"},
		{"release says the user's own attempt failed", "release-receipt"},
		{"locked while live", "locked-while-live"},
		{"revivable with no final login pending", "locked-receipt"},
		{"a guess counted on a tombstone", "counted-while-locked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailures()
			a := &account{name: "x", fails: f, pending: map[string]uint64{}}
			a.registered(&protocol.Receipt{Kind: protocol.ReceiptRegistered, Generation: gen, Limit: 3, TriesLeft: 3, StoreSequence: 1})
			honest(a, tc.name)
			classes, first := f.summary()
			if tc.want == "" {
				if f.count() != 0 {
					t.Fatalf("failures on an honest history: %v", first)
				}
				if !a.erasedNow() || !a.tally().ok {
					t.Fatalf("the model lost track: erased %v, tally %+v", a.erasedNow(), a.tally())
				}
				return
			}
			if !strings.Contains(strings.Join(classes, "\n"), tc.want) {
				t.Fatalf("want a %s failure, got %v", tc.want, first)
			}
		})
	}
}
