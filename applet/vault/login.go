package vault

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// opaqueContext is protocol.OPAQUEContext as the bytes the OPAQUE code takes.
var opaqueContext = []byte(protocol.OPAQUEContext)

// loginKind says which record a KE2 was computed on.
type loginKind uint8

const (
	loginReal    loginKind = iota // a live record: the attempt was counted first
	loginLocked                   // a tombstone: a fake KE2, nothing counted
	loginUnknown                  // no record: a fake KE2, nothing counted
)

// pendingLogin is the server state between KE2 and KE3. RAM only; single use.
//
// Only the final login — the one whose KE1 committed the tombstone — holds
// the record's secrets (rec): they exist nowhere else, and its valid KE3 is
// the only way back. Every other login re-reads the record at KE3, so that a
// KE3 held back while the record was burned finds the tombstone.
type pendingLogin struct {
	kind        loginKind
	userID      []byte
	requestHash []byte
	generation  uint64
	attempt     uint64 // the record's attempts total with this one: its place in the count
	final       bool   // this login's KE1 committed the tombstone
	// revivableUntil is, for a login that found a tombstone, when the final
	// login pending at that moment expires (zero if none was): read with
	// the record, under the user's lock, since by the time the receipt is
	// signed the final login may be done.
	revivableUntil time.Time
	rec            *record // the record as counted; secrets only for the final login
	state          *opaque.ServerState
}

func (l *pendingLogin) wipe() {
	if l.rec != nil {
		l.rec.wipe()
	}
	if l.state != nil {
		l.state.Discard()
	}
}

// finalLogins remembers, per user, until when the final login may still
// revive the record, so that a locked receipt can say so. RAM only: a
// reboot forgets the final login and with it the record's secrets.
type finalLogins struct {
	mu    sync.Mutex
	until map[string]finalLogin
}

type finalLogin struct {
	login   *pendingLogin
	expires time.Time
}

func (f *finalLogins) set(l *pendingLogin, expires time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.until == nil {
		f.until = make(map[string]finalLogin)
	}
	f.until[string(l.userID)] = finalLogin{login: l, expires: expires}
}

// forget drops l's entry, if it is still l's.
func (f *finalLogins) forget(l *pendingLogin) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.until[string(l.userID)]; ok && e.login == l {
		delete(f.until, string(l.userID))
	}
}

// sweep forgets entries whose login the logins table has expired.
func (f *finalLogins) sweep(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, e := range f.until {
		if now.After(e.expires) {
			delete(f.until, u)
		}
	}
}

// expiry is when the user's pending final login expires; zero if none is.
func (f *finalLogins) expiry(userID []byte) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.until[string(userID)].expires
}

// loginStart counts the attempt durably, then answers KE2.
func (v *Vault) loginStart(ctx context.Context, m *protocol.LoginStart) (protocol.Message, error) {
	if err := opaque.ValidateKE1(m.KE1); err != nil {
		return nil, protocol.Errorf(protocol.CodeMalformed, "ke1 is not valid")
	}
	// Reserve the place for this login's KE2 state before counting: a
	// guess that is counted and then refused for want of room would be a
	// try lost with "busy", which promises that nothing was counted.
	if !v.logins.reserve(v.opts.Now()) {
		return nil, protocol.Errorf(protocol.CodeBusy, "too many logins in flight")
	}
	reserved := true
	defer func() {
		if reserved {
			v.logins.unreserve()
		}
	}()
	login, err := v.countAttempt(m.UserID)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (protocol.Message, error) {
		v.finals.forget(login)
		login.wipe()
		return nil, err
	}
	login.requestHash = protocol.RequestHash(m.KE1)

	// The increment must be durable before any OPRF evaluation on the
	// record's key. If the commit fails the attempt may or may not have been
	// counted, so nothing is answered: failing closed costs the user at
	// most one try.
	seq, err := v.commit(ctx)
	if err != nil {
		return fail(storeError(err))
	}

	key := opaque.OPRFKey{}
	var opaqueRecord opaque.Record
	if login.kind == loginReal {
		key = login.rec.oprfKey()
		opaqueRecord, err = opaque.ParseRecord(login.rec.OPAQUE)
	} else {
		// Unknown and locked users get a fake record: same shape, same
		// work, so the reply does not tell them apart from a wrong password.
		opaqueRecord, key, err = opaque.FakeRecord(v.id.fakeSeed, m.UserID)
	}
	if err != nil {
		clear(key[:])
		return fail(protocol.Errorf(protocol.CodeInternal, "record does not parse"))
	}
	if v.onEvaluate != nil && login.kind == loginReal {
		v.onEvaluate(login)
	}
	ke2, state, err := opaque.GenerateKE2(v.opts.Rand, v.id.ake, opaqueRecord, key, m.UserID, m.KE1,
		opaque.Identities{Client: m.UserID}, opaqueContext)
	clear(key[:])
	if !login.final && login.rec != nil {
		// Only the final login keeps the secrets past KE2.
		keep := login.rec.tombstone()
		login.rec.wipe()
		login.rec = keep
	}
	if err != nil {
		return fail(protocol.Errorf(protocol.CodeMalformed, "ke1 is not valid"))
	}
	login.state = state

	receipt, err := protocol.SignReceipt(v.id.signing, v.attemptReceipt(login, m.UserID, seq))
	if err != nil {
		return fail(err)
	}
	reserved = false
	now := v.opts.Now()
	h, err := v.logins.addReserved(v.opts.Rand, now, login)
	if err != nil {
		return fail(err)
	}
	if login.final {
		// The revival window ends exactly when the table forgets the login.
		v.finals.set(login, now.Add(v.opts.LoginTTL))
	}
	return &protocol.LoginStartReply{Handle: h[:], KE2: ke2, Receipt: receipt}, nil
}

// countAttempt stages the counter increment for a live record (or, at the
// limit, its tombstone) under the user's lock, so that concurrent KE1s for
// one user never count past the limit.
func (v *Vault) countAttempt(userID []byte) (*pendingLogin, error) {
	login := &pendingLogin{kind: loginUnknown, userID: append([]byte(nil), userID...)}
	mu := v.lockUser(userID)
	defer mu.Unlock()
	b, found, err := v.store.Get(userKey(userID))
	if err != nil {
		return nil, storeError(err)
	}
	if !found {
		login.generation = v.fakeGeneration(userID)
		return login, nil
	}
	rec, err := parseRecord(b)
	clear(b)
	if err != nil {
		return nil, storeError(err)
	}
	login.generation = rec.Generation
	if rec.locked() {
		login.kind, login.rec = loginLocked, rec.tombstone()
		login.revivableUntil = v.finals.expiry(userID)
		rec.wipe()
		return login, nil
	}
	rec.Attempts++
	login.kind, login.attempt = loginReal, rec.Attempts
	login.rec = rec.clone()
	if rec.locked() {
		// The final attempt: what is committed is the tombstone, and the
		// store is asked to shred every older copy of the record. The
		// secrets survive only in login.rec, in RAM.
		login.final = true
		// Provisional until the login is in the table (loginStart), so
		// that a KE1 in between is told the record may come back.
		v.finals.set(login, v.opts.Now().Add(v.opts.LoginTTL))
		err = v.putRecord(userID, rec.tombstone())
		v.store.Shred()
	} else {
		err = v.putRecord(userID, rec)
	}
	rec.wipe()
	if err != nil {
		v.finals.forget(login)
		login.wipe()
		return nil, err
	}
	return login, nil
}

func (v *Vault) attemptReceipt(l *pendingLogin, userID []byte, seq uint64) *protocol.Receipt {
	r := &protocol.Receipt{
		Kind:          protocol.ReceiptAttempt,
		UserID:        userID,
		Generation:    l.generation,
		StoreSequence: seq,
		RequestHash:   l.requestHash,
	}
	switch l.kind {
	case loginReal:
		r.Limit = l.rec.Limit
		r.TriesLeft = l.rec.triesLeft()
		r.FailedSinceSuccess = uint(l.rec.counter() - 1)
		r.AttemptsTotal, r.SuccessesTotal = protocol.Total(l.rec.Attempts), protocol.Total(l.rec.Successes)
	case loginLocked:
		r.Kind = protocol.ReceiptLocked
		r.Limit = l.rec.Limit
		r.FailedSinceSuccess = uint(l.rec.counter())
		r.AttemptsTotal, r.SuccessesTotal = protocol.Total(l.rec.Attempts), protocol.Total(l.rec.Successes)
		// The logins table expires an entry once now is after its expiry.
		if now := v.opts.Now(); !l.revivableUntil.IsZero() && !now.After(l.revivableUntil) {
			r.RevivableMillis = protocol.Total(max(l.revivableUntil.Sub(now).Milliseconds(), 1))
		}
	case loginUnknown:
		// Looks like the first attempt since a success on a record with
		// the vault's maximum limit, with totals that are a stable
		// function of the user id. SPEC.md says what this does not hide.
		r.Limit = v.opts.MaxLimit
		r.TriesLeft = v.opts.MaxLimit - 1
		successes, attempts := v.fakeTotals(userID)
		r.AttemptsTotal, r.SuccessesTotal = protocol.Total(attempts), protocol.Total(successes)
	}
	return r
}

// fakeGeneration is a stable generation for a user without a record, shaped
// like a real one.
func (v *Vault) fakeGeneration(userID []byte) uint64 {
	return binary.BigEndian.Uint64(v.fakeDigest("coffer/v1 fake generation", userID)) | 1<<63
}

// fakeTotals are stable running totals for a user without a record: a few
// confirmed logins and, as an attempt receipt for an unknown user shows
// one attempt since the last success, at least that many attempts more.
func (v *Vault) fakeTotals(userID []byte) (successes, attempts uint64) {
	d := v.fakeDigest("coffer/v1 fake totals", userID)
	successes = uint64(d[0] % 40)
	attempts = successes + 1 + uint64(d[1]%8)
	return successes, attempts
}

func (v *Vault) fakeDigest(label string, userID []byte) []byte {
	mac := hmac.New(sha512.New, v.id.fakeSeed)
	mac.Write([]byte(label))
	mac.Write(userID)
	return mac.Sum(nil)
}

// loginFinish checks KE3. A valid KE3 changes nothing durable — the login
// counts as a success only when its client confirms it in the session
// (session.go) — with one exception: the final login's KE3 writes the record
// back from its RAM copy, with one try left. It opens a session and releases
// the wrapped key sealed under it.
func (v *Vault) loginFinish(ctx context.Context, m *protocol.LoginFinish) (protocol.Message, error) {
	// The session's place is reserved before anything else, so that "busy"
	// is answered only while nothing has happened: the login stays pending
	// and the same KE3 can be sent again.
	if !v.sessions.reserve(v.opts.Now()) {
		return nil, protocol.Errorf(protocol.CodeBusy, "too many sessions open")
	}
	reserved := true
	defer func() {
		if reserved {
			v.sessions.unreserve()
		}
	}()
	login, ok := v.logins.take(m.Handle, v.opts.Now())
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such login")
	}
	defer login.wipe()
	defer v.finals.forget(login)
	sessionKey, err := login.state.Finish(m.KE3)
	if err != nil || login.kind != loginReal {
		clear(sessionKey)
		return nil, protocol.Errorf(protocol.CodeAuthentication, "login failed")
	}
	defer clear(sessionKey)

	rec, failed, err := v.recordForRelease(login)
	if err != nil {
		return nil, err
	}
	defer rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	keys, err := protocol.DeriveSessionKeys(sessionKey, m.Handle)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "key derivation failed")
	}
	// What the user is told: the attempts counted against them since the
	// last confirmed success, less this login's own, and what is left once
	// this login is confirmed.
	confirmed := rec.clone()
	confirmed.Watermark = max(confirmed.Watermark, login.attempt)
	receipt, err := protocol.SignReceipt(v.id.signing, &protocol.Receipt{
		Kind:               protocol.ReceiptReleased,
		UserID:             login.userID,
		Generation:         rec.Generation,
		Limit:              rec.Limit,
		TriesLeft:          confirmed.triesLeft(),
		FailedSinceSuccess: uint(failed),
		StoreSequence:      seq,
		RequestHash:        login.requestHash,
		AttemptsTotal:      protocol.Total(rec.Attempts),
		SuccessesTotal:     protocol.Total(rec.Successes),
	})
	confirmed.wipe()
	if err != nil {
		return nil, err
	}
	now := v.opts.Now()
	s := &session{userID: login.userID, generation: rec.Generation, keys: keys, next: 1,
		attempt: login.attempt, releaseHash: protocol.ReceiptHash(&receipt), ends: now.Add(v.opts.SessionLifetime)}
	reserved = false
	h, err := v.sessions.addReservedWithHandle(m.Handle, now, s)
	if err != nil {
		s.wipe()
		return nil, err
	}
	sealed, err := protocol.SealMessage(&keys.ToClient, 0, m.Handle, &protocol.SessionReplyInner{
		WrappedKey: rec.WrappedKey,
		Receipt:    &receipt,
	})
	if err != nil {
		v.sessions.remove(h[:])
		return nil, err
	}
	return &protocol.SealedReply{Sealed: sealed}, nil
}

// recordForRelease reads the record a login that proved the password may
// release, under the user's lock, and the attempts counted against the user
// other than this login's own. A live record of the login's registration
// is released as it stands. A tombstone is released only to the final
// login that committed it, which stages the record's revival with one try
// left (the watermark moves past this login's own attempt, which proved the
// password). Any other tombstone means other attempts locked the record
// since this login's KE1: the password was right, and the key stays put.
func (v *Vault) recordForRelease(login *pendingLogin) (rec *record, failed uint64, err error) {
	mu := v.lockUser(login.userID)
	defer mu.Unlock()
	b, found, err := v.store.Get(userKey(login.userID))
	if err != nil {
		return nil, 0, storeError(err)
	}
	if !found {
		return nil, 0, protocol.Errorf(protocol.CodeUnknownHandle, "the record is gone")
	}
	cur, err := parseRecord(b)
	clear(b)
	if err != nil {
		return nil, 0, storeError(err)
	}
	if cur.Generation != login.generation {
		cur.wipe()
		return nil, 0, protocol.Errorf(protocol.CodeUnknownHandle, "the record changed since this login")
	}
	if cur.State == stateLive {
		failed = cur.counter()
		if login.attempt > cur.Watermark {
			failed-- // this login's own attempt is still counted
		}
		return cur, failed, nil
	}
	if !login.final || cur.Attempts != login.attempt {
		return nil, 0, protocol.Errorf(protocol.CodeLocked, "other attempts locked the record during this login")
	}
	rec = login.rec.clone()
	rec.State, rec.Attempts, rec.Successes, rec.Watermark = stateLive, cur.Attempts, cur.Successes, cur.Watermark+1
	if err := v.putRecord(login.userID, rec); err != nil {
		rec.wipe()
		return nil, 0, err
	}
	return rec, cur.counter() - 1, nil
}
