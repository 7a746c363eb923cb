package vault

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// realms is the RAM state of the realm record kind (REALMS.md, sections
// 7-10): tickets, sessions, the final tickets' revival windows and the
// register tickets' record watches. A reboot forgets all of it (N9).
type realms struct {
	tickets  *ticketTable
	sessions *table[*realmSession]
	finals   realmFinals
	watches  recordWatches
}

func newRealms(opts *Options) *realms {
	return &realms{
		tickets:  newTicketTable(opts.MaxPendingLogins, opts.LoginTTL),
		sessions: newTable[*realmSession](opts.MaxSessions, opts.SessionTTL),
	}
}

func (r *realms) expire(now time.Time) {
	r.tickets.expire(now)
	r.finals.sweep(now)
	r.sessions.expire(now)
}

func (r *realms) clear() {
	r.tickets.clear()
	r.sessions.clear()
}

// realmRequest is an opened realm request: who it is for, its client nonce
// and the secret its reply is sealed with.
type realmRequest struct {
	userID      []byte
	clientNonce []byte
	secret      *protocol.RealmSecret
}

// dispatchRealm serves types 16-21. Requests of types 16-20 are opened
// here and their replies sealed here; errors go back unsealed, as every
// error does.
func (v *Vault) dispatchRealm(ctx context.Context, t protocol.Type, body []byte) (protocol.Message, error) {
	if t == protocol.TypeRealmSession {
		var m protocol.Session
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.realmSessionCommand(ctx, &m)
	}
	var outer protocol.RealmRequest
	if err := protocol.Unmarshal(body, &outer); err != nil {
		return nil, err
	}
	var inner protocol.Message
	var probe protocol.RealmProbe
	var challenge protocol.RealmChallenge
	var evaluate protocol.RealmEvaluate
	var unlock protocol.RealmUnlock
	var register protocol.RealmRegister
	switch t {
	case protocol.TypeRealmProbe:
		inner = &probe
	case protocol.TypeRealmChallenge:
		inner = &challenge
	case protocol.TypeRealmEvaluate:
		inner = &evaluate
	case protocol.TypeRealmUnlock:
		inner = &unlock
	case protocol.TypeRealmRegister:
		inner = &register
		defer register.Material.Wipe()
	default:
		return nil, protocol.Errorf(protocol.CodeMalformed, "%s is not a request", t)
	}
	opened, secret, err := protocol.OpenRealmRequest(v.id.hpke, t, &outer, inner)
	if err != nil {
		if errors.Is(err, protocol.ErrOpen) {
			return nil, protocol.Errorf(protocol.CodeAuthentication, "realm request does not open")
		}
		return nil, err
	}
	defer secret.Wipe()
	req := &realmRequest{userID: opened.UserID, clientNonce: opened.ClientNonce, secret: secret}
	var reply protocol.Message
	switch t {
	case protocol.TypeRealmProbe:
		reply, err = v.realmProbe(ctx, req)
	case protocol.TypeRealmChallenge:
		reply, err = v.realmChallenge(ctx, req, &challenge)
	case protocol.TypeRealmEvaluate:
		reply, err = v.realmEvaluate(ctx, req, &evaluate)
	case protocol.TypeRealmUnlock:
		reply, err = v.realmUnlock(ctx, req, &unlock)
	case protocol.TypeRealmRegister:
		reply, err = v.realmRegister(ctx, req, &register)
	}
	if err != nil {
		return nil, err
	}
	return secret.SealReply(v.opts.Rand, reply)
}

// readRealmRecord reads the user's realm record; nil if there is none.
// Call with the user's lock held.
func (v *Vault) readRealmRecord(userID []byte) (*realmRecord, error) {
	b, found, err := v.store.Get(realmKey(userID))
	if err != nil {
		return nil, storeError(err)
	}
	if !found {
		return nil, nil
	}
	rec, err := parseRealmRecord(b)
	clear(b)
	if err != nil {
		return nil, storeError(err)
	}
	return rec, nil
}

// putRealmRecord stages rec. Every write of a realm record goes through
// here or deleteRealmRecord, so that register tickets see it (N7). Call
// with the user's lock held.
func (v *Vault) putRealmRecord(userID []byte, rec *realmRecord) error {
	if err := rec.check(); err != nil {
		return protocol.Errorf(protocol.CodeInternal, "realm record would be inconsistent")
	}
	b, err := rec.marshal()
	if err != nil {
		return protocol.Errorf(protocol.CodeInternal, "realm record too large")
	}
	defer clear(b)
	v.realm.watches.written(userID)
	if err := v.store.Put(realmKey(userID), b); err != nil {
		return storeError(err)
	}
	return nil
}

func (v *Vault) deleteRealmRecord(userID []byte) error {
	v.realm.watches.written(userID)
	if err := v.store.Delete(realmKey(userID)); err != nil {
		return storeError(err)
	}
	return nil
}

// realmProbe signs the record's state; nothing changes.
func (v *Vault) realmProbe(ctx context.Context, req *realmRequest) (protocol.Message, error) {
	mu := v.lockUser(req.userID)
	rec, err := v.readRealmRecord(req.userID)
	revivable := v.realm.finals.expiry(req.userID)
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	r := v.realmReceipt(protocol.RealmReceiptProbe, req.userID, rec, nil, seq)
	r.RequestHash, r.ClientNonce = req.secret.RequestHash, req.clientNonce
	v.setRevivable(r, rec, revivable)
	receipt, err := protocol.SignRealmReceipt(v.id.signing, r)
	if err != nil {
		return nil, err
	}
	return &protocol.RealmReceiptReply{Receipt: receipt}, nil
}

// realmChallenge issues a ticket that counts nothing (N8): for a session on
// a version held live (purpose 1), or for open registration where the user
// has no live record (purpose 2, watching the record, N7).
func (v *Vault) realmChallenge(ctx context.Context, req *realmRequest, m *protocol.RealmChallenge) (protocol.Message, error) {
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
	tk := &realmTicket{userID: bytesCopy(req.userID), versionID: bytesCopy(m.VersionID)}
	mu := v.lockUser(req.userID)
	if m.Purpose == protocol.PurposeRegister {
		// Watch from before the read, so that no write slips in between.
		tk.purpose = ticketRegister
		tk.watch, tk.unwatch = v.realm.watches.watch(req.userID)
	} else {
		tk.purpose = ticketSession
	}
	rec, err := v.readRealmRecord(req.userID)
	revivable := v.realm.finals.expiry(req.userID)
	mu.Unlock()
	if err != nil {
		tk.wipe()
		return nil, err
	}
	defer rec.wipe()
	kind := protocol.RealmReceiptChallenge
	switch {
	case tk.purpose == ticketRegister && rec != nil && rec.live():
		tk.wipe()
		return nil, protocol.Errorf(protocol.CodeVersion, "this user has a live record here: register in a session")
	case tk.purpose == ticketSession && rec == nil:
		tk.wipe()
		return nil, protocol.Errorf(protocol.CodeVersion, "no such version here")
	case tk.purpose == ticketSession && !rec.live():
		kind = protocol.RealmReceiptLocked
		tk.wipe()
		tk = nil
	case tk.purpose == ticketSession:
		sv := rec.held(m.VersionID)
		if sv == nil {
			tk.wipe()
			return nil, protocol.Errorf(protocol.CodeVersion, "no such version here")
		}
		tk.manifestHash = bytesCopy(sv.ManifestHash)
		tk.unlockKey = bytesCopy(sv.UnlockKey)
		tk.attempt = rec.Attempts
	}
	reply := &protocol.RealmChallengeReply{}
	if tk != nil {
		if tk.nonce, err = randomBytes(v.opts.Rand, protocol.TicketNonceSize); err != nil {
			tk.wipe()
			return nil, protocol.Errorf(protocol.CodeInternal, "randomness failed")
		}
		reserved = false
		h, err := v.realm.tickets.addReserved(v.opts.Rand, now, tk)
		if err != nil {
			tk.wipe()
			return nil, err
		}
		reply.Handle, reply.TicketNonce = h[:], bytesCopy(tk.nonce)
	}
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	r := v.realmReceipt(kind, req.userID, rec, m.VersionID, seq)
	r.RequestHash, r.ClientNonce = req.secret.RequestHash, req.clientNonce
	v.setRevivable(r, rec, revivable)
	if reply.Receipt, err = protocol.SignRealmReceipt(v.id.signing, r); err != nil {
		return nil, err
	}
	return reply, nil
}

// realmReceipt describes rec (nil: no record) in a receipt of kind for
// versionID (nil: none). The caller binds it to its request.
func (v *Vault) realmReceipt(kind protocol.RealmReceiptKind, userID []byte, rec *realmRecord, versionID []byte, seq uint64) *protocol.RealmReceipt {
	r := &protocol.RealmReceipt{
		Kind: kind, UserID: bytesCopy(userID), State: protocol.RealmNoRecord,
		VersionID: make([]byte, protocol.VersionIDSize), StoreSequence: protocol.Total(seq),
		RequestHash: make([]byte, protocol.HashSize), ClientNonce: make([]byte, protocol.ClientNonceSize),
		Versions:       []protocol.VersionState{protocol.EmptyVersionState(), protocol.EmptyVersionState()},
		EvaluationHash: make([]byte, protocol.HashSize),
	}
	if len(versionID) == protocol.VersionIDSize {
		copy(r.VersionID, versionID)
	}
	if rec == nil {
		return r
	}
	r.State = protocol.RealmLive
	if !rec.live() {
		r.State = protocol.RealmLocked
	}
	r.Limit, r.TriesLeft, r.FailedSinceSuccess = rec.Limit, rec.triesLeft(), uint(rec.counter())
	r.AttemptsTotal, r.SuccessesTotal = protocol.Total(rec.Attempts), protocol.Total(rec.Successes)
	for i, sv := range rec.Versions {
		r.Versions[i] = protocol.VersionState{VersionID: bytesCopy(sv.VersionID), Status: sv.Status, Index: sv.Index,
			ManifestHash: bytesCopy(sv.ManifestHash), Origin: sv.Origin}
	}
	return r
}

// setRevivable turns r into a locked receipt's shape when rec is a
// tombstone: revivable_ms says until when the final ticket pending at the
// time of the read may still revive it.
func (v *Vault) setRevivable(r *protocol.RealmReceipt, rec *realmRecord, until time.Time) {
	if rec == nil || rec.live() || r.Kind != protocol.RealmReceiptLocked {
		return
	}
	if now := v.opts.Now(); !until.IsZero() && !now.After(until) {
		r.RevivableMillis = protocol.Total(max(until.Sub(now).Milliseconds(), 1))
	}
}

func randomBytes(random io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(random, b); err != nil {
		return nil, err
	}
	return b, nil
}
