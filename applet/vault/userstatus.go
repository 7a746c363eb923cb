package vault

import (
	"context"

	"github.com/cofferhsm/coffer/protocol"
)

// userStatus signs one user's attempt count together with the client's
// nonce (SPEC.md, "User status"). It counts nothing and writes nothing.
//
// A user without a record gets what a real record would show right after
// the fake attempt receipt a KE1 would get (loginStart): the vault's maximum
// limit, one attempt counted, the stable fake generation and totals. The
// fake values are computed for every request, and the store is read the
// same way, so that known and unknown users cost the same work; the reply
// is padded to one size.
func (v *Vault) userStatus(ctx context.Context, m *protocol.UserStatusRequest) (*protocol.UserStatusReply, error) {
	fakeGeneration := v.fakeGeneration(m.UserID)
	fakeSuccesses, fakeAttempts := v.fakeTotals(m.UserID)
	st := &protocol.UserStatus{
		Version: protocol.Version, UserID: m.UserID, Nonce: m.Nonce,
		Generation: fakeGeneration, Limit: v.opts.MaxLimit, TriesLeft: v.opts.MaxLimit - 1, FailedSinceSuccess: 1,
		AttemptsTotal: protocol.Total(fakeAttempts), SuccessesTotal: protocol.Total(fakeSuccesses),
	}
	if err := v.readUserStatus(m.UserID, st); err != nil {
		return nil, err
	}
	// What was read may be staged and not yet durable: wait for the commit
	// that covers it, as a status does, and report that sequence.
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	st.StoreSequence = seq
	r, err := protocol.SignUserStatus(v.id.signing, st)
	return &r, err
}

// readUserStatus fills st from the user's record, if there is one, under
// the user's lock (the revival window is read with the tombstone, as
// countAttempt reads it).
func (v *Vault) readUserStatus(userID []byte, st *protocol.UserStatus) error {
	mu := v.lockUser(userID)
	defer mu.Unlock()
	b, found, err := v.store.Get(userKey(userID))
	if err != nil {
		return storeError(err)
	}
	if !found {
		return nil
	}
	rec, err := parseRecord(b)
	clear(b)
	if err != nil {
		return storeError(err)
	}
	defer rec.wipe()
	st.Generation, st.Limit = rec.Generation, rec.Limit
	st.FailedSinceSuccess = uint(rec.counter())
	st.TriesLeft = rec.triesLeft()
	st.AttemptsTotal, st.SuccessesTotal = protocol.Total(rec.Attempts), protocol.Total(rec.Successes)
	if rec.locked() {
		st.TriesLeft = 0
		st.FailedSinceSuccess = max(st.FailedSinceSuccess, rec.Limit)
		if until := v.finals.expiry(userID); !until.IsZero() {
			if now := v.opts.Now(); !now.After(until) {
				st.RevivableMillis = protocol.Total(max(until.Sub(now).Milliseconds(), 1))
			}
		}
	}
	return nil
}
