package vault

import (
	"context"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// realmUnlock checks a tag over a ticket and opens a session (N4, N6). It
// changes nothing durable, except the final ticket's revival: the record
// its own evaluation burned is written back live with one try left.
func (v *Vault) realmUnlock(ctx context.Context, req *realmRequest, m *protocol.RealmUnlock) (protocol.Message, error) {
	// N6: the session's place first, so that busy means nothing happened
	// and the same unlock may be sent again.
	if !v.realm.sessions.reserve(v.opts.Now()) {
		return nil, protocol.Errorf(protocol.CodeBusy, "too many sessions open")
	}
	reserved := true
	defer func() {
		if reserved {
			v.realm.sessions.unreserve()
		}
	}()
	// The ticket is used up before its tag is checked: a wrong tag costs
	// the ticket, so a tag is tried once.
	tk, ok := v.realm.tickets.take(m.Handle, v.opts.Now())
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such ticket")
	}
	defer tk.wipe()
	defer v.realm.finals.forget(tk)
	if tk.purpose == ticketRegister || string(tk.userID) != string(req.userID) {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such ticket")
	}
	if !realmkey.TagValid(tk.unlockKey, m.Handle, tk.nonce, m.Tag) {
		return nil, protocol.Errorf(protocol.CodeAuthentication, "unlock failed")
	}
	rec, revived, err := v.recordForUnlock(tk)
	if err != nil {
		return nil, err
	}
	defer rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	secret, err := realmkey.SessionSecret(tk.unlockKey, req.secret.SessionExport(), tk.nonce)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "key derivation failed")
	}
	keys, err := protocol.DeriveSessionKeys(secret, m.Handle)
	clear(secret)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "key derivation failed")
	}
	// What the user is told: the evaluations held against them other than
	// this ticket's own, and the tries left once this unlock is confirmed.
	r := v.realmReceipt(protocol.RealmReceiptUnlocked, req.userID, rec, tk.versionID, seq)
	r.RequestHash, r.ClientNonce = req.secret.RequestHash, req.clientNonce
	confirmed := min(max(rec.Watermark, tk.attempt), rec.Attempts)
	r.TriesLeft = rec.Limit - uint(rec.Attempts-confirmed)
	if tk.purpose == ticketEvaluation && tk.attempt > rec.Watermark && !revived {
		// This ticket's own evaluation is still counted. A revival has
		// already released it (the watermark one past), so subtracting it
		// again would hide one of the others.
		r.FailedSinceSuccess--
	}
	receipt, err := protocol.SignRealmReceipt(v.id.signing, r)
	if err != nil {
		keys.Wipe()
		return nil, err
	}
	now := v.opts.Now()
	s := &realmSession{userID: tk.userID, versionID: tk.versionID, manifestHash: tk.manifestHash, keys: keys, next: 1,
		attempt: tk.attempt, unlockedHash: protocol.RealmReceiptHash(&receipt), ends: now.Add(v.opts.SessionLifetime)}
	reserved = false
	if _, err := v.realm.sessions.addReservedWithHandle(m.Handle, now, s); err != nil {
		s.wipe()
		return nil, err
	}
	return &protocol.RealmReceiptReply{Receipt: receipt}, nil
}

// recordForUnlock re-reads the record for a ticket whose tag was right,
// under the user's lock. A live record that still holds the ticket's
// version opens as it stands. A tombstone comes back only for the final
// ticket whose evaluation made it, and only while it is that same
// tombstone (no evaluation since, the same versions): the RAM copy is
// staged live with the watermark one past, so the counter stands at
// limit − 1. Any other ticket finds it locked. revived says which.
func (v *Vault) recordForUnlock(tk *realmTicket) (rec *realmRecord, revived bool, err error) {
	mu := v.lockUser(tk.userID)
	defer mu.Unlock()
	cur, err := v.readRealmRecord(tk.userID)
	if err != nil {
		return nil, false, err
	}
	if cur == nil {
		return nil, false, protocol.Errorf(protocol.CodeVersion, "the record is gone")
	}
	if cur.live() {
		if cur.holds(tk.versionID, tk.manifestHash) == nil {
			cur.wipe()
			return nil, false, protocol.Errorf(protocol.CodeVersion, "the version is no longer held here")
		}
		return cur, false, nil
	}
	if !tk.final || tk.rec == nil || cur.Attempts != tk.attempt || !cur.sameVersions(tk.rec) {
		return nil, false, protocol.Errorf(protocol.CodeLocked, "the record is locked")
	}
	rec = tk.rec.clone()
	rec.State, rec.Attempts, rec.Successes, rec.Watermark = stateLive, cur.Attempts, cur.Successes, cur.Watermark+1
	if err := v.putRealmRecord(tk.userID, rec); err != nil {
		rec.wipe()
		return nil, false, err
	}
	return rec, true, nil
}
