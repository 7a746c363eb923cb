package vault

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// realmSession is what an unlock opens: keys from the version's unlock key
// and the unlock request's HPKE export, on one version (N10). The unlock is
// not yet a success: the first command must confirm it (N5).
type realmSession struct {
	mu           sync.Mutex
	userID       []byte
	versionID    []byte
	manifestHash []byte
	keys         protocol.SessionKeys
	next         uint64
	attempt      uint64 // the ticket's place in the attempts total
	unlockedHash []byte // what the confirmation must name
	confirmed    bool
	ends         time.Time
	closed       bool
	// ended is set, without the session's lock, by a commit or delete in
	// another session of the user (N10); the next command finds it.
	ended atomic.Bool
}

func (s *realmSession) wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipeLocked()
}

func (s *realmSession) wipeLocked() {
	s.keys.Wipe()
	s.closed = true
}

// realmSessionCommand opens one sealed command, as sessionCommand does for
// the single vault: out of order or forged, it is refused and changes
// nothing; once it opens, its sequence is used up.
func (v *Vault) realmSessionCommand(ctx context.Context, m *protocol.Session) (protocol.Message, error) {
	now := v.opts.Now()
	s, ok := v.realm.sessions.peek(m.Handle, now)
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such session")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such session")
	}
	if now.After(s.ends) || s.ended.Load() {
		s.wipeLocked()
		v.realm.sessions.drop(m.Handle)
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "the session is over")
	}
	if m.Seq != s.next {
		return nil, protocol.Errorf(protocol.CodeSequence, "expected sequence %d", s.next)
	}
	var cmd protocol.RealmCommand
	if err := protocol.OpenMessage(&s.keys.ToVault, m.Seq, m.Handle, m.Sealed, &cmd); err != nil {
		if err == protocol.ErrOpen {
			return nil, protocol.Errorf(protocol.CodeAuthentication, "session command does not open")
		}
		return nil, err
	}
	if cmd.Material != nil {
		defer cmd.Material.Wipe()
	}
	s.next++
	v.realm.sessions.touch(m.Handle, now)
	if err := v.confirmRealmOnce(ctx, s, cmd.Confirm); err != nil {
		return nil, err
	}
	bind := func(r *protocol.RealmReceipt) {
		r.RequestHash = protocol.RealmCommandHash(m.Handle, m.Seq, m.Sealed)
		r.ClientNonce = bytesCopy(cmd.ClientNonce)
	}
	receipt, endSession, err := v.runRealmCommand(ctx, s, &cmd, bind)
	if err != nil {
		return nil, err
	}
	sealed, err := protocol.SealMessage(&s.keys.ToClient, m.Seq, m.Handle, &protocol.RealmReceiptReply{Receipt: *receipt})
	if endSession {
		s.wipeLocked()
		v.realm.sessions.drop(m.Handle)
	}
	if err != nil {
		return nil, err
	}
	return &protocol.SessionReply{Seq: m.Seq, Sealed: sealed}, nil
}

// confirmRealmOnce makes the unlock a success when the first command names
// its receipt (N5): the watermark moves to the ticket's attempt (never
// back), one more success is counted and committed, and only then does the
// command run. Retries of a confirmation are no-ops, as confirmOnce's.
func (v *Vault) confirmRealmOnce(ctx context.Context, s *realmSession, confirm []byte) error {
	if already, err := checkConfirmation(s.confirmed, confirm, s.unlockedHash, "unlock"); already || err != nil {
		return err
	}
	mu := v.lockUser(s.userID)
	rec, _, err := v.sessionRecord(s)
	if err == nil {
		rec.Watermark = min(max(rec.Watermark, s.attempt), rec.Attempts)
		rec.Successes++
		err = v.putRealmRecord(s.userID, rec)
		rec.wipe()
		s.confirmed = err == nil
	}
	mu.Unlock()
	if err != nil {
		return err
	}
	if _, err := v.commit(ctx); err != nil {
		return storeError(err)
	}
	return nil
}

// sessionRecord reads the user's record and checks that it is live and
// still holds the session's version (N10). Call with the user's lock held.
func (v *Vault) sessionRecord(s *realmSession) (*realmRecord, *storedVersion, error) {
	rec, err := v.readRealmRecord(s.userID)
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		return nil, nil, protocol.Errorf(protocol.CodeVersion, "the record is gone")
	}
	if !rec.live() {
		return nil, nil, protocol.Errorf(protocol.CodeLocked, "the record is locked")
	}
	sv := rec.holds(s.versionID, s.manifestHash)
	if sv == nil {
		rec.wipe()
		return nil, nil, protocol.Errorf(protocol.CodeVersion, "the session's version is no longer held here")
	}
	return rec, sv, nil
}

func (v *Vault) runRealmCommand(ctx context.Context, s *realmSession, cmd *protocol.RealmCommand, bind func(*protocol.RealmReceipt)) (*protocol.SignedRealmReceipt, bool, error) {
	var (
		kind    protocol.RealmReceiptKind
		rec     *realmRecord
		version []byte
		end     bool
		err     error
	)
	switch cmd.Command {
	case protocol.RealmStatus, protocol.RealmClose:
		kind, version, end = protocol.RealmReceiptStatus, s.versionID, cmd.Command == protocol.RealmClose
		mu := v.lockUser(s.userID)
		rec, err = v.readRealmRecord(s.userID)
		mu.Unlock()
	case protocol.RealmPutVersion:
		kind = protocol.RealmReceiptRegistered
		rec, version, err = v.putVersion(s, cmd.Material)
	case protocol.RealmCommit:
		kind, version = protocol.RealmReceiptCommitted, cmd.VersionID
		rec, err = v.commitVersion(s, cmd.VersionID)
	case protocol.RealmDelete:
		kind, version, end = protocol.RealmReceiptDeleted, s.versionID, true
		err = v.deleteRealm(s)
	default:
		return nil, false, protocol.Errorf(protocol.CodeMalformed, "unknown command")
	}
	if err != nil {
		return nil, false, err
	}
	defer rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, false, storeError(err)
	}
	r := v.realmReceipt(kind, s.userID, rec, version, seq)
	bind(r)
	receipt, err := protocol.SignRealmReceipt(v.id.signing, r)
	if err != nil {
		return nil, false, err
	}
	return &receipt, end, nil
}

// putVersion is V3: with a pending P held, only a session on P may put, and
// P is committed first; otherwise the new version goes pending beside the
// committed one. A put of a version already held pending is a no-op, so
// that a client may send it again.
func (v *Vault) putVersion(s *realmSession, m *protocol.VersionMaterial) (*realmRecord, []byte, error) {
	sv, err := v.validateMaterial(s.userID, m)
	if err != nil {
		return nil, nil, err
	}
	defer clear(sv.Share)
	defer clear(sv.UnlockKey)
	mu := v.lockUser(s.userID)
	defer mu.Unlock()
	rec, own, err := v.sessionRecord(s)
	if err != nil {
		return nil, nil, err
	}
	if same := rec.held(sv.VersionID); same != nil {
		if same.Status == protocol.VersionPending && string(same.ManifestHash) == string(sv.ManifestHash) {
			return rec, sv.VersionID, nil
		}
		rec.wipe()
		return nil, nil, protocol.Errorf(protocol.CodeVersion, "this version is already held here in another state")
	}
	origin := protocol.OriginSession
	if own.Origin == protocol.OriginOverBurned {
		origin = protocol.OriginOverBurned
	}
	committed := false
	if p := rec.pending(); p != nil {
		if p != own {
			rec.wipe()
			return nil, nil, protocol.Errorf(protocol.CodeVersion, "a pending version is held: put in a session on it")
		}
		if err := commitInPlace(rec, own); err != nil {
			rec.wipe()
			return nil, nil, err
		}
		committed = true
	}
	sv.Status, sv.Origin = protocol.VersionPending, origin
	rec.Versions = append(rec.Versions, sv)
	read := rec
	rec = rec.clone()
	read.wipe() // the record as read holds the kept version's secrets too
	if err := v.putRealmRecord(s.userID, rec); err != nil {
		rec.wipe()
		return nil, nil, err
	}
	if committed {
		// The put committed P (V3 is V4 first): older copies are shredded
		// and, as after any commit, the user's other sessions end (N10).
		v.store.Shred()
		v.endOtherRealmSessions(s)
	}
	return rec, sv.VersionID, nil
}

// commitVersion is V4, in a session whose version is still held (N10).
func (v *Vault) commitVersion(s *realmSession, versionID []byte) (*realmRecord, error) {
	mu := v.lockUser(s.userID)
	defer mu.Unlock()
	rec, _, err := v.sessionRecord(s)
	if err != nil {
		return nil, err
	}
	target := rec.held(versionID)
	if target == nil {
		rec.wipe()
		return nil, protocol.Errorf(protocol.CodeVersion, "no such version here")
	}
	if target.Status == protocol.VersionCommitted {
		if len(rec.Versions) == 1 {
			return rec, nil
		}
		// There is no abort: committing the committed version again would
		// erase the pending one, which leaves only by its own commit.
		rec.wipe()
		return nil, protocol.Errorf(protocol.CodeVersion, "a pending version is held: commit it, not the committed one")
	}
	if err := commitInPlace(rec, target); err != nil {
		rec.wipe()
		return nil, err
	}
	if err := v.putRealmRecord(s.userID, rec); err != nil {
		rec.wipe()
		return nil, err
	}
	v.store.Shred()
	v.endOtherRealmSessions(s)
	return rec, nil
}

// commitInPlace makes target the record's one version, committed, with its
// limit; refused, changing nothing, when the counter already reaches that
// limit.
func commitInPlace(rec *realmRecord, target *storedVersion) error {
	if rec.counter() >= uint64(target.Limit) {
		return protocol.Errorf(protocol.CodeCounterOverLimit, "the counter already reaches this version's limit")
	}
	kept := *target
	for i := range rec.Versions {
		if &rec.Versions[i] != target {
			clear(rec.Versions[i].Share)
			clear(rec.Versions[i].UnlockKey)
		}
	}
	kept.Status = protocol.VersionCommitted
	rec.Versions = []storedVersion{kept}
	rec.Limit = kept.Limit
	return nil
}

// deleteRealm is V5: the record goes, older copies are shredded and every
// session of the user ends.
func (v *Vault) deleteRealm(s *realmSession) error {
	mu := v.lockUser(s.userID)
	defer mu.Unlock()
	rec, _, err := v.sessionRecord(s)
	if err != nil {
		return err
	}
	rec.wipe()
	if err := v.deleteRealmRecord(s.userID); err != nil {
		return err
	}
	v.store.Shred()
	v.endOtherRealmSessions(s)
	return nil
}

// endOtherRealmSessions ends every other session of s's user (N10): a
// session opened on a version must not keep authority once a commit or a
// delete changed what the realm holds.
func (v *Vault) endOtherRealmSessions(s *realmSession) {
	for _, o := range v.realm.sessions.values() {
		if o != s && string(o.userID) == string(s.userID) {
			o.ended.Store(true)
		}
	}
}
