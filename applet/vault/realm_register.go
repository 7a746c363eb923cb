package vault

import (
	"context"
	"crypto/ed25519"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// realmRegister is open registration (V1, N7): with a register ticket, on
// the record state the ticket was issued on (no record or a tombstone), it
// stores the version pending and alone.
func (v *Vault) realmRegister(ctx context.Context, req *realmRequest, m *protocol.RealmRegister) (protocol.Message, error) {
	tk, ok := v.realm.tickets.take(m.Handle, v.opts.Now())
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such ticket")
	}
	defer tk.wipe()
	if tk.purpose != ticketRegister || string(tk.userID) != string(req.userID) {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such ticket")
	}
	sv, err := v.validateMaterial(req.userID, &m.Material)
	if err != nil {
		return nil, err
	}
	defer clear(sv.Share)
	defer clear(sv.UnlockKey)

	mu := v.lockUser(req.userID)
	rec, err := v.registerOnUnchanged(tk, sv)
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	r := v.realmReceipt(protocol.RealmReceiptRegistered, req.userID, rec, sv.VersionID, seq)
	r.RequestHash, r.ClientNonce = req.secret.RequestHash, req.clientNonce
	receipt, err := protocol.SignRealmReceipt(v.id.signing, r)
	if err != nil {
		return nil, err
	}
	return &protocol.RealmReceiptReply{Receipt: receipt}, nil
}

// registerOnUnchanged stages the new record if the user's record was not
// written since the ticket was issued (N7): otherwise a registration held
// back could land on a record burned since, with a fresh counter. Over a
// tombstone the totals carry on and the watermark moves to the attempts:
// new keys, a new budget. Call with the user's lock held.
func (v *Vault) registerOnUnchanged(tk *realmTicket, sv storedVersion) (*realmRecord, error) {
	if v.realm.watches.isStale(tk.watch) {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "the record changed since this ticket: ask again")
	}
	cur, err := v.readRealmRecord(tk.userID)
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.live() {
		cur.wipe()
		return nil, protocol.Errorf(protocol.CodeVersion, "this user has a live record here")
	}
	sv.Status = protocol.VersionPending
	sv.Origin = protocol.OriginOpen
	rec := &realmRecord{State: stateLive, Limit: sv.Limit}
	if cur != nil {
		sv.Origin = protocol.OriginOverBurned
		rec.Attempts, rec.Watermark, rec.Successes = cur.Attempts, cur.Attempts, cur.Successes
	}
	rec.Versions = []storedVersion{sv}
	rec = rec.clone()
	if err := v.putRealmRecord(tk.userID, rec); err != nil {
		rec.wipe()
		return nil, err
	}
	return rec, nil
}

// validateMaterial checks a version's material for this realm and this
// account, in the order of REALMS.md section 7, and returns the version to
// store (status and origin left to the caller). Every refusal is
// malformed, but a limit above this vault's maximum, which is limit.
func (v *Vault) validateMaterial(userID []byte, m *protocol.VersionMaterial) (storedVersion, error) {
	bad := func(what string) (storedVersion, error) {
		return storedVersion{}, protocol.Errorf(protocol.CodeMalformed, "version material: %s", what)
	}
	body, err := protocol.ParseManifest(m.Manifest)
	if err != nil {
		return bad("the manifest does not decode or its anchor did not sign it")
	}
	n := uint(body.N())
	if m.Index < 1 || m.Index > n {
		return bad("index outside the manifest")
	}
	own := v.id.signing.Public().(ed25519.PublicKey)
	if string(body.Realms[m.Index-1]) != string(own) {
		return bad("the manifest names another realm at this index")
	}
	if string(body.Accounts[m.Index-1]) != string(userID) {
		return bad("the manifest names another account at this index")
	}
	if err := realmkey.CheckShare(body.Commitments, int(m.Index), m.Share); err != nil {
		return bad("the share is not on the manifest's commitments")
	}
	if body.Limit > v.opts.MaxLimit {
		return storedVersion{}, protocol.Errorf(protocol.CodeLimit, "this vault allows at most %d attempts", v.opts.MaxLimit)
	}
	return storedVersion{VersionID: bytesCopy(body.VersionID), Index: m.Index, Share: bytesCopy(m.Share),
		UnlockKey: bytesCopy(m.UnlockKey), ManifestHash: protocol.ManifestHash(m.Manifest), Limit: body.Limit}, nil
}
