package vault

import (
	"context"
	"time"

	"github.com/cloudflare/circl/group"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// realmEvaluate counts one evaluation durably, then evaluates (N1-N3).
func (v *Vault) realmEvaluate(ctx context.Context, req *realmRequest, m *protocol.RealmEvaluate) (protocol.Message, error) {
	// A blinded element that cannot be evaluated is refused before it is
	// counted: checking it reads no secret.
	if !evaluableElement(m.Blinded) {
		return nil, protocol.Errorf(protocol.CodeMalformed, "blinded element is not a valid element")
	}
	// N2: the ticket's place first, so that a counted evaluation is never
	// answered busy.
	now := v.opts.Now()
	if !v.realm.tickets.reserve(now, req.userID) {
		return nil, protocol.Errorf(protocol.CodeBusy, "too many tickets in flight")
	}
	reserved := true
	defer func() {
		if reserved {
			v.realm.tickets.unreserve(req.userID)
		}
	}()
	tk, locked, err := v.countRealmEvaluation(req.userID, m.VersionID)
	if err != nil {
		return nil, err
	}
	defer locked.rec.wipe()
	fail := func(err error) (protocol.Message, error) {
		v.realm.finals.forget(tk)
		tk.wipe()
		return nil, err
	}
	if tk == nil {
		// N3: a tombstone gets a signed locked receipt, nothing counted.
		seq, err := v.commit(ctx)
		if err != nil {
			return nil, storeError(err)
		}
		r := v.realmReceipt(protocol.RealmReceiptLocked, req.userID, locked.rec, m.VersionID, seq)
		r.RequestHash, r.ClientNonce = req.secret.RequestHash, req.clientNonce
		v.setRevivable(r, locked.rec, locked.revivable)
		receipt, err := protocol.SignRealmReceipt(v.id.signing, r)
		if err != nil {
			return nil, err
		}
		return &protocol.RealmEvaluateReply{Receipt: receipt}, nil
	}
	share := tk.share
	tk.share = nil
	defer clear(share)

	// N1: the increment is durable before the share is read. If the commit
	// fails the evaluation may or may not be counted, so nothing is
	// answered: failing closed costs the user at most one try.
	seq, err := v.commit(ctx)
	if err != nil {
		return fail(storeError(err))
	}
	if v.onRealmEvaluate != nil {
		v.onRealmEvaluate(req.userID)
	}
	evaluated, proof, err := realmkey.EvaluateBlinded(share, m.Blinded)
	if err != nil {
		return fail(protocol.Errorf(protocol.CodeMalformed, "blinded element is not a valid element"))
	}
	if tk.nonce, err = randomBytes(v.opts.Rand, protocol.TicketNonceSize); err != nil {
		return fail(protocol.Errorf(protocol.CodeInternal, "randomness failed"))
	}
	reserved = false
	h, err := v.realm.tickets.addReserved(v.opts.Rand, now, tk)
	if err != nil {
		return fail(err)
	}
	if tk.final {
		// The revival window ends exactly when the table forgets the ticket.
		v.realm.finals.set(tk, tk.expires)
	}
	r := v.realmReceipt(protocol.RealmReceiptAttempt, req.userID, tk.counted, m.VersionID, seq)
	r.RequestHash, r.ClientNonce = req.secret.RequestHash, req.clientNonce
	// The user is told the evaluations held against them besides this one.
	r.FailedSinceSuccess--
	r.EvaluationHash = protocol.EvaluationHash(tk.manifestHash, tk.index, m.Blinded, evaluated, proof, h[:])
	tk.counted.wipe()
	tk.counted = nil
	receipt, err := protocol.SignRealmReceipt(v.id.signing, r)
	if err != nil {
		if t, ok := v.realm.tickets.take(h[:], now); ok {
			v.realm.finals.forget(t)
			t.wipe()
		}
		return nil, err
	}
	return &protocol.RealmEvaluateReply{Receipt: receipt, Handle: h[:], TicketNonce: bytesCopy(tk.nonce),
		Evaluated: evaluated, Proof: proof}, nil
}

// lockedRead is a tombstone as an evaluation found it, with the final
// ticket's window read under the same lock.
type lockedRead struct {
	rec       *realmRecord
	revivable time.Time
}

// countRealmEvaluation stages the increment under the user's lock, so that
// concurrent evaluations never count past the limit. The increment that
// reaches the limit stages the tombstone instead and asks the store to
// shred older copies; the record's secrets then survive only in the final
// ticket, in RAM. It returns no ticket for a tombstone.
func (v *Vault) countRealmEvaluation(userID, versionID []byte) (*realmTicket, lockedRead, error) {
	mu := v.lockUser(userID)
	defer mu.Unlock()
	rec, err := v.readRealmRecord(userID)
	if err != nil {
		return nil, lockedRead{}, err
	}
	if rec == nil {
		return nil, lockedRead{}, protocol.Errorf(protocol.CodeVersion, "no such version here")
	}
	if !rec.live() {
		return nil, lockedRead{rec: rec, revivable: v.realm.finals.expiry(userID)}, nil
	}
	defer rec.wipe()
	sv := rec.held(versionID)
	if sv == nil {
		return nil, lockedRead{}, protocol.Errorf(protocol.CodeVersion, "no such version here")
	}
	rec.Attempts++
	tk := &realmTicket{purpose: ticketEvaluation, userID: bytesCopy(userID), versionID: bytesCopy(versionID),
		manifestHash: bytesCopy(sv.ManifestHash), index: sv.Index, unlockKey: bytesCopy(sv.UnlockKey),
		share: bytesCopy(sv.Share), attempt: rec.Attempts}
	if rec.counter() >= uint64(rec.Limit) {
		tk.final = true
		tk.rec = rec.clone()
		// Provisional until the ticket is in the table, so that an
		// evaluation in between is told the record may come back.
		v.realm.finals.set(tk, v.opts.Now().Add(v.opts.LoginTTL))
		tomb := rec.tombstone()
		tk.counted = tomb.clone()
		err = v.putRealmRecord(userID, tomb)
		v.store.Shred()
	} else {
		tk.counted = rec.tombstone() // the totals and names, no secrets
		tk.counted.State = stateLive
		err = v.putRealmRecord(userID, rec)
	}
	if err != nil {
		v.realm.finals.forget(tk)
		tk.wipe()
		return nil, lockedRead{}, err
	}
	return tk, lockedRead{}, nil
}

// evaluableElement reports whether b is a canonical ristretto255 element
// other than the identity.
func evaluableElement(b []byte) bool {
	e := group.Ristretto255.NewElement()
	return len(b) == protocol.ElementSize && e.UnmarshalBinary(b) == nil && !e.IsIdentity()
}
