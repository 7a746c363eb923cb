package vault

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// opaqueContext is RFC 9807's context string for this protocol version.
var opaqueContext = []byte("coffer/v1")

// loginKind says which record a KE2 was computed on.
type loginKind uint8

const (
	loginReal    loginKind = iota // a live record: the attempt was counted first
	loginLocked                   // a tombstone: a fake KE2, nothing counted
	loginUnknown                  // no record: a fake KE2, nothing counted
)

// pendingLogin is the server state between KE2 and KE3. RAM only; single use.
type pendingLogin struct {
	kind        loginKind
	userID      []byte
	requestHash []byte
	generation  uint64
	counter     uint    // the counter including this attempt
	successes   uint64  // the record's successful logins at KE1
	rec         *record // a copy of the live record; for the final attempt, the only one left
	state       *opaque.ServerState
}

func (l *pendingLogin) wipe() {
	if l.rec != nil {
		l.rec.wipe()
	}
	if l.state != nil {
		l.state.Discard()
	}
}

// loginStart counts the attempt durably, then answers KE2.
func (v *Vault) loginStart(ctx context.Context, m *protocol.LoginStart) (protocol.Message, error) {
	if err := opaque.ValidateKE1(m.KE1); err != nil {
		return nil, protocol.Errorf(protocol.CodeMalformed, "ke1 is not valid")
	}
	// Refuse before counting when no KE2 could be kept: a guess that is
	// counted but never answered is a try lost for nothing.
	if !v.logins.hasRoom(v.opts.Now()) {
		return nil, protocol.Errorf(protocol.CodeBusy, "too many logins in flight")
	}
	login, err := v.countAttempt(m.UserID)
	if err != nil {
		return nil, err
	}
	login.requestHash = protocol.RequestHash(m.KE1)

	// The increment must be durable before any OPRF evaluation on the
	// record's key. If the commit fails the attempt may or may not have been
	// counted, so nothing is answered: failing closed costs the user at
	// most one try.
	seq, err := v.commit(ctx)
	if err != nil {
		login.wipe()
		return nil, storeError(err)
	}

	rec, key := login.rec, opaque.OPRFKey{}
	var opaqueRecord opaque.Record
	if login.kind == loginReal {
		key = rec.oprfKey()
		opaqueRecord, err = opaque.ParseRecord(rec.OPAQUE)
	} else {
		// Unknown and locked users get a fake record: same shape, same
		// work, so the reply does not tell them apart from a wrong password.
		opaqueRecord, key, err = opaque.FakeRecord(v.id.fakeSeed, m.UserID)
	}
	if err != nil {
		login.wipe()
		return nil, protocol.Errorf(protocol.CodeInternal, "record does not parse")
	}
	ke2, state, err := opaque.GenerateKE2(v.opts.Rand, v.id.ake, opaqueRecord, key, m.UserID, m.KE1,
		opaque.Identities{Client: m.UserID}, opaqueContext)
	clear(key[:])
	if err != nil {
		login.wipe()
		return nil, protocol.Errorf(protocol.CodeMalformed, "ke1 is not valid")
	}
	login.state = state

	receipt, err := protocol.SignReceipt(v.id.signing, v.attemptReceipt(login, m.UserID, seq))
	if err != nil {
		login.wipe()
		return nil, err
	}
	h, err := v.logins.add(v.opts.Rand, v.opts.Now(), login)
	if err != nil {
		login.wipe()
		return nil, err
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
		login.generation, login.counter = v.fakeGeneration(userID), 1
		return login, nil
	}
	rec, err := parseRecord(b)
	clear(b)
	if err != nil {
		return nil, storeError(err)
	}
	login.generation, login.successes = rec.Generation, rec.Successes
	if rec.locked() {
		login.kind, login.counter, login.rec = loginLocked, rec.Counter, rec.tombstone()
		rec.wipe()
		return login, nil
	}
	rec.Counter++
	login.kind, login.counter = loginReal, rec.Counter
	login.rec = rec.clone()
	if rec.Counter >= rec.Limit {
		// The final attempt: what is committed is the tombstone, and the
		// store is asked to shred every older copy of the record. The
		// secrets survive only in login.rec, in RAM.
		err = v.putRecord(userID, rec.tombstone())
		v.store.Shred()
	} else {
		err = v.putRecord(userID, rec)
	}
	rec.wipe()
	if err != nil {
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
		r.TriesLeft = l.rec.Limit - l.counter
		r.FailedSinceSuccess = l.counter - 1
	case loginLocked:
		r.Kind = protocol.ReceiptLocked
		r.Limit = l.rec.Limit
		r.FailedSinceSuccess = l.counter
	case loginUnknown:
		// Looks like the first attempt on a record with the vault's
		// maximum limit. SPEC.md says what this does not hide.
		r.Limit = v.opts.MaxLimit
		r.TriesLeft = v.opts.MaxLimit - 1
	}
	return r
}

// fakeGeneration is a stable generation for a user without a record, shaped
// like a real one.
func (v *Vault) fakeGeneration(userID []byte) uint64 {
	mac := hmac.New(sha512.New, v.id.fakeSeed)
	mac.Write([]byte("coffer/v1 fake generation"))
	mac.Write(userID)
	return binary.BigEndian.Uint64(mac.Sum(nil)) | 1<<63
}

// loginFinish checks KE3. On success it resets the counter (writing back the
// RAM copy, which is what restores a record whose final attempt succeeded),
// opens a session and releases the wrapped key sealed under it.
func (v *Vault) loginFinish(ctx context.Context, m *protocol.LoginFinish) (protocol.Message, error) {
	login, ok := v.logins.take(m.Handle, v.opts.Now())
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such login")
	}
	defer login.wipe()
	sessionKey, err := login.state.Finish(m.KE3)
	if err != nil || login.kind != loginReal {
		clear(sessionKey)
		return nil, protocol.Errorf(protocol.CodeAuthentication, "login failed")
	}
	defer clear(sessionKey)

	rec := login.rec
	failed, err := v.resetCounter(login)
	if err != nil {
		return nil, err
	}
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	keys, err := protocol.DeriveSessionKeys(sessionKey, m.Handle)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "key derivation failed")
	}
	s := &session{userID: login.userID, generation: rec.Generation, keys: keys, next: 1}
	h, err := v.sessions.addWithHandle(m.Handle, v.opts.Now(), s)
	if err != nil {
		s.wipe()
		return nil, err
	}
	receipt, err := protocol.SignReceipt(v.id.signing, &protocol.Receipt{
		Kind:               protocol.ReceiptReleased,
		UserID:             login.userID,
		Generation:         rec.Generation,
		Limit:              rec.Limit,
		TriesLeft:          rec.Limit,
		FailedSinceSuccess: failed,
		StoreSequence:      seq,
		RequestHash:        login.requestHash,
	})
	if err != nil {
		v.sessions.remove(h[:])
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

// resetCounter writes the login's copy of the record back with a zero
// counter, provided the stored record is still the same registration (live,
// or the tombstone this login's final attempt left). A record changed or
// deleted in between makes the login fail.
//
// It returns the failed attempts since the last success: every attempt the
// stored counter holds, which includes guesses counted between this login's
// KE1 and KE3 (someone guessing while the user logs in is exactly what the
// user must be told), less this login's own attempt unless another login
// succeeded in between and the counter no longer holds it.
func (v *Vault) resetCounter(login *pendingLogin) (failed uint, err error) {
	mu := v.lockUser(login.userID)
	defer mu.Unlock()
	b, found, err := v.store.Get(userKey(login.userID))
	if err != nil {
		return 0, storeError(err)
	}
	if !found {
		return 0, protocol.Errorf(protocol.CodeAuthentication, "login failed")
	}
	cur, err := parseRecord(b)
	clear(b)
	if err != nil {
		return 0, storeError(err)
	}
	cur.wipe()
	if cur.Generation != login.generation {
		return 0, protocol.Errorf(protocol.CodeAuthentication, "login failed")
	}
	failed = cur.Counter
	if cur.Successes == login.successes && failed > 0 {
		failed--
	}
	rec := login.rec.clone()
	defer rec.wipe()
	rec.State, rec.Counter, rec.Successes = stateLive, 0, cur.Successes+1
	return failed, v.putRecord(login.userID, rec)
}
