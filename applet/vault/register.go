package vault

import (
	"context"
	"sync"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// pendingRegistration is a registration between start and finish: the fresh
// OPRF key drawn for it and the keys of its run (derived from the response
// nonce of its own reply, so no other run shares them). RAM only.
type pendingRegistration struct {
	userID  []byte
	oprfKey opaque.OPRFKey
	keys    protocol.RegistrationKeys
	watch   *recordWatch // set stale by any write of the user's record after the start
	unwatch func()
}

func (r *pendingRegistration) wipe() {
	clear(r.oprfKey[:])
	r.keys.Wipe()
	if r.unwatch != nil {
		r.unwatch()
	}
}

// recordWatch says whether a user's record was written since it was set up.
type recordWatch struct{ stale bool }

// recordWatches lets a pending registration see whether its user's record
// changed after it started. A registration finishes only on the record
// state it started on: otherwise an operator who held a RegisterFinish back
// could deliver it after the user registered again and the record was
// burned to a tombstone (or deleted), bringing back a live record of that
// password — limit more guesses per finish held back. RAM only, as pending
// registrations are.
type recordWatches struct {
	mu sync.Mutex
	m  map[string]*watchSet
}

type watchSet map[*recordWatch]struct{}

func (w *recordWatches) watch(userID []byte) (*recordWatch, func()) {
	rw := &recordWatch{}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]*watchSet)
	}
	set := w.m[string(userID)]
	if set == nil {
		set = &watchSet{}
		w.m[string(userID)] = set
	}
	(*set)[rw] = struct{}{}
	return rw, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(*set, rw)
		if len(*set) == 0 && w.m[string(userID)] == set {
			delete(w.m, string(userID))
		}
	}
}

// written marks every watch on the user's record stale.
func (w *recordWatches) written(userID []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.m[string(userID)]; set != nil {
		for rw := range *set {
			rw.stale = true
		}
	}
}

func (w *recordWatches) isStale(rw *recordWatch) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return rw.stale
}

// registerStart opens the HPKE channel and answers OPAQUE's registration
// request with a fresh random OPRF key. It never evaluates an existing
// user's key: the key it uses exists only for this registration.
//
// Every answer, to a replayed RegisterStart too, draws its own response
// nonce, from which the keys of this run derive: a replay never seals under
// a key and nonce used before, and nothing of one run opens in another.
func (v *Vault) registerStart(m *protocol.RegisterStart) (protocol.Message, error) {
	inner, secret, err := protocol.OpenRegistration(v.id.hpke, m)
	if err != nil {
		if protocol.CodeOf(err) == protocol.CodeMalformed && err != protocol.ErrOpen {
			return nil, err
		}
		return nil, protocol.Errorf(protocol.CodeAuthentication, "registration channel does not open")
	}
	defer secret.Wipe()
	nonce, err := protocol.NewResponseNonce(v.opts.Rand)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "randomness failed")
	}
	keys, err := secret.Keys(nonce)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "registration keys")
	}
	reg := &pendingRegistration{userID: inner.UserID, keys: keys}
	// The table keeps the finish keys; the start-reply key stays here.
	reg.keys.StartReply.Wipe()
	defer keys.Wipe()
	// Watch the record from before it is read, so that no write slips in
	// between the check and the watch.
	mu := v.lockUser(inner.UserID)
	reg.watch, reg.unwatch = v.watches.watch(inner.UserID)
	exists, err := v.liveRecordExists(inner.UserID)
	mu.Unlock()
	if err != nil {
		reg.wipe()
		return nil, err
	} else if exists {
		reg.wipe()
		return nil, protocol.Errorf(protocol.CodeExists, "this user has a record: log in to change its password, or delete it")
	}
	if reg.oprfKey, err = opaque.NewOPRFKey(v.opts.Rand); err != nil {
		reg.wipe()
		return nil, protocol.Errorf(protocol.CodeInternal, "randomness failed")
	}
	response, err := opaque.CreateRegistrationResponse(inner.Blinded, v.id.ake.Public, reg.oprfKey)
	if err != nil {
		reg.wipe()
		return nil, protocol.Errorf(protocol.CodeMalformed, "registration request is not a valid element")
	}
	h, err := v.registrations.add(v.opts.Rand, v.opts.Now(), reg)
	if err != nil {
		reg.wipe()
		return nil, err
	}
	sealed, err := keys.StartReply.SealMessage(h[:], &protocol.RegisterStartReplyInner{
		Evaluated:       response[:opaque.ElementSize],
		ServerPublicKey: response[opaque.ElementSize:],
	})
	if err != nil {
		v.registrations.remove(h[:])
		return nil, err
	}
	return &protocol.RegisterStartReply{Handle: h[:], Sealed: sealed, ResponseNonce: nonce}, nil
}

// registerFinish stores the new record and answers with a signed receipt,
// sealed, once the record is durable.
func (v *Vault) registerFinish(ctx context.Context, m *protocol.RegisterFinish) (protocol.Message, error) {
	reg, ok := v.registrations.take(m.Handle, v.opts.Now())
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such registration")
	}
	defer reg.wipe()
	var inner protocol.RegisterFinishInner
	if err := reg.keys.Finish.OpenMessage(m.Handle, m.Sealed, &inner); err != nil {
		if err == protocol.ErrOpen {
			return nil, protocol.Errorf(protocol.CodeAuthentication, "registration finish does not open")
		}
		return nil, err
	}
	defer clear(inner.WrappedKey)
	if _, err := opaque.ParseRecord(inner.Record); err != nil {
		return nil, protocol.Errorf(protocol.CodeMalformed, "registration record is not valid")
	}
	if inner.Limit > v.opts.MaxLimit {
		return nil, protocol.Errorf(protocol.CodeLimit, "this vault allows at most %d attempts", v.opts.MaxLimit)
	}
	gen, err := newGeneration(v.opts.Rand)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "randomness failed")
	}
	rec := &record{
		State:      stateLive,
		Generation: gen,
		Limit:      inner.Limit,
		OPRFKey:    append([]byte(nil), reg.oprfKey[:]...),
		OPAQUE:     inner.Record,
		WrappedKey: append([]byte(nil), inner.WrappedKey...),
	}
	defer rec.wipe()

	if err := v.putIfUnchanged(reg, rec); err != nil {
		return nil, err
	}
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	receipt, err := protocol.SignReceipt(v.id.signing, &protocol.Receipt{
		Kind:          protocol.ReceiptRegistered,
		UserID:        reg.userID,
		Generation:    gen,
		Limit:         rec.Limit,
		TriesLeft:     rec.Limit,
		StoreSequence: seq,
		RecordHash:    protocol.RecordHash(inner.Record, inner.WrappedKey, inner.Limit),
	})
	if err != nil {
		return nil, err
	}
	sealed, err := reg.keys.FinishReply.SealMessage(m.Handle, &receipt)
	if err != nil {
		return nil, err
	}
	return &protocol.SealedReply{Sealed: sealed}, nil
}

func (v *Vault) liveRecordExists(userID []byte) (bool, error) {
	b, found, err := v.store.Get(userKey(userID))
	if err != nil {
		return false, storeError(err)
	}
	if !found {
		return false, nil
	}
	cur, err := parseRecord(b)
	if err != nil {
		return false, storeError(err)
	}
	return cur.State == stateLive, nil
}

// putIfUnchanged stages rec for a registration whose user's record has not
// been written since its start, and that had no live record then. A
// tombstone may be replaced: its key is gone, so a new registration is the
// only way forward for that user.
func (v *Vault) putIfUnchanged(reg *pendingRegistration, rec *record) error {
	mu := v.lockUser(reg.userID)
	defer mu.Unlock()
	if v.watches.isStale(reg.watch) {
		exists, err := v.liveRecordExists(reg.userID)
		if err == nil && exists {
			return protocol.Errorf(protocol.CodeExists, "this user has a record")
		}
		return protocol.Errorf(protocol.CodeUnknownHandle, "the user's record changed since this registration started: start again")
	}
	exists, err := v.liveRecordExists(reg.userID)
	if err != nil {
		return err
	}
	if exists {
		return protocol.Errorf(protocol.CodeExists, "this user has a record")
	}
	return v.putRecord(reg.userID, rec)
}

// putRecord stages rec as the user's record. Every write of a record goes
// through here or deleteUserRecord, so that pending registrations see it.
// Call with the user's lock held.
func (v *Vault) putRecord(userID []byte, rec *record) error {
	b, err := rec.marshal()
	if err != nil {
		return protocol.Errorf(protocol.CodeInternal, "record too large")
	}
	defer clear(b)
	v.watches.written(userID)
	if err := v.store.Put(userKey(userID), b); err != nil {
		return storeError(err)
	}
	return nil
}

// deleteUserRecord stages the removal of the user's record. Call with the
// user's lock held.
func (v *Vault) deleteUserRecord(userID []byte) error {
	v.watches.written(userID)
	if err := v.store.Delete(userKey(userID)); err != nil {
		return storeError(err)
	}
	return nil
}
