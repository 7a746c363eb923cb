package vault

import (
	"context"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// session is what a successful login opens: keys derived from the OPAQUE
// session key and the next sequence number expected. Commands in a session
// run one at a time.
//
// The login that opened it is not yet a success: its first command must
// confirm it (carry the hash of the release receipt), which proves the
// client received the release. Only then does the vault stop holding that
// login's attempt, and the attempts before it, against the user.
type session struct {
	mu          sync.Mutex
	userID      []byte
	generation  uint64
	keys        protocol.SessionKeys
	next        uint64          // the sequence the next command must carry
	attempt     uint64          // the login's place in the record's attempts total
	releaseHash []byte          // what the confirmation must name
	confirmed   bool            // the client confirmed the login (staged, at least)
	ends        time.Time       // the end of the session's lifetime, however busy
	change      *opaque.OPRFKey // drawn by change-start, used by change-finish
	closed      bool
}

func (s *session) wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipeLocked()
}

func (s *session) wipeLocked() {
	s.keys.Wipe()
	if s.change != nil {
		clear(s.change[:])
		s.change = nil
	}
	s.closed = true
}

// sessionCommand opens one sealed command. A command that does not carry the
// next sequence number, or does not authenticate, is refused without
// changing the session, so a replay or a forgery costs the host nothing but
// also gains it nothing.
//
// Only a command that opens extends the session's idle time: its handle
// travels in clear, so junk under it must not keep it (and its keys) alive.
func (v *Vault) sessionCommand(ctx context.Context, m *protocol.Session) (protocol.Message, error) {
	now := v.opts.Now()
	s, ok := v.sessions.peek(m.Handle, now)
	if !ok {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such session")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "no such session")
	}
	if now.After(s.ends) {
		s.wipeLocked()
		v.sessions.drop(m.Handle)
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "the session's lifetime is over")
	}
	if m.Seq != s.next {
		return nil, protocol.Errorf(protocol.CodeSequence, "expected sequence %d", s.next)
	}
	var cmd protocol.SessionCommand
	if err := protocol.OpenMessage(&s.keys.ToVault, m.Seq, m.Handle, m.Sealed, &cmd); err != nil {
		if err == protocol.ErrOpen {
			return nil, protocol.Errorf(protocol.CodeAuthentication, "session command does not open")
		}
		return nil, err
	}
	defer clear(cmd.WrappedKey)
	// The sequence is used up once a command opens, whatever follows: the
	// client never seals two commands under one sequence (one nonce).
	s.next++
	v.sessions.touch(m.Handle, now)
	if err := v.confirmOnce(ctx, s, cmd.Confirm); err != nil {
		return nil, err
	}

	reply, endSession, err := v.runCommand(ctx, s, &cmd)
	if err != nil {
		return nil, err
	}
	sealed, err := protocol.SealMessage(&s.keys.ToClient, m.Seq, m.Handle, reply)
	if reply.WrappedKey != nil {
		clear(reply.WrappedKey)
	}
	if endSession {
		s.wipeLocked()
		v.sessions.drop(m.Handle)
	}
	if err != nil {
		return nil, err
	}
	return &protocol.SessionReply{Seq: m.Seq, Sealed: sealed}, nil
}

// confirmOnce checks the confirmation the session's first command must
// carry and makes the login a success: the watermark moves to the login's
// own attempt (never back), and the record counts one more confirmed
// success. Attempts counted after the login's KE1 stay counted. A client
// repeats the confirmation until a command is answered, so once confirmed
// the same one is a no-op; the login counts once, from the moment the
// change is staged, even if that commit fails and the command is retried.
func (v *Vault) confirmOnce(ctx context.Context, s *session, confirm []byte) error {
	if already, err := checkConfirmation(s.confirmed, confirm, s.releaseHash, "login"); already || err != nil {
		return err
	}
	mu := v.lockUser(s.userID)
	rec, err := v.currentRecord(s)
	if err == nil {
		rec.Watermark = max(rec.Watermark, s.attempt)
		rec.Successes++
		err = v.putRecord(s.userID, rec)
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

func (v *Vault) runCommand(ctx context.Context, s *session, cmd *protocol.SessionCommand) (reply *protocol.SessionReplyInner, endSession bool, err error) {
	switch cmd.Command {
	case protocol.CommandRelease:
		reply, err = v.release(ctx, s)
		return reply, false, err
	case protocol.CommandChangeStart:
		reply, err = v.changeStart(s, cmd)
		return reply, false, err
	case protocol.CommandChangeFinish:
		reply, err = v.changeFinish(ctx, s, cmd)
		return reply, err == nil, err
	case protocol.CommandDelete:
		reply, err = v.deleteRecord(ctx, s)
		return reply, err == nil, err
	case protocol.CommandClose:
		return &protocol.SessionReplyInner{}, true, nil
	}
	return nil, false, protocol.Errorf(protocol.CodeMalformed, "unknown command")
}

// currentRecord reads the session user's record and checks it is still the
// registration the session was opened on. Call with the user's lock held.
func (v *Vault) currentRecord(s *session) (*record, error) {
	b, found, err := v.store.Get(userKey(s.userID))
	if err != nil {
		return nil, storeError(err)
	}
	if !found {
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "the record is gone")
	}
	rec, err := parseRecord(b)
	clear(b)
	if err != nil {
		return nil, storeError(err)
	}
	if rec.Generation != s.generation {
		rec.wipe()
		return nil, protocol.Errorf(protocol.CodeUnknownHandle, "the record changed since this login")
	}
	if rec.State != stateLive {
		return nil, protocol.Errorf(protocol.CodeLocked, "other attempts locked the record since this login")
	}
	return rec, nil
}

func (v *Vault) release(ctx context.Context, s *session) (*protocol.SessionReplyInner, error) {
	mu := v.lockUser(s.userID)
	rec, err := v.currentRecord(s)
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	defer rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	receipt, err := protocol.SignReceipt(v.id.signing, &protocol.Receipt{
		Kind: protocol.ReceiptReleased, UserID: s.userID, Generation: rec.Generation,
		Limit: rec.Limit, TriesLeft: rec.triesLeft(), FailedSinceSuccess: uint(rec.counter()), StoreSequence: seq,
		AttemptsTotal: protocol.Total(rec.Attempts), SuccessesTotal: protocol.Total(rec.Successes),
	})
	if err != nil {
		return nil, err
	}
	return &protocol.SessionReplyInner{WrappedKey: append([]byte(nil), rec.WrappedKey...), Receipt: &receipt}, nil
}

// changeStart answers the registration request for a new password with a
// fresh OPRF key, kept in the session until change-finish.
func (v *Vault) changeStart(s *session, cmd *protocol.SessionCommand) (*protocol.SessionReplyInner, error) {
	key, err := opaque.NewOPRFKey(v.opts.Rand)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "randomness failed")
	}
	response, err := opaque.CreateRegistrationResponse(cmd.Blinded, v.id.ake.Public, key)
	if err != nil {
		clear(key[:])
		return nil, protocol.Errorf(protocol.CodeMalformed, "registration request is not a valid element")
	}
	if s.change != nil {
		clear(s.change[:])
	}
	s.change = &key
	return &protocol.SessionReplyInner{
		Evaluated:       response[:opaque.ElementSize],
		ServerPublicKey: response[opaque.ElementSize:],
	}, nil
}

// changeFinish replaces the record with one for the new password and shreds
// the old one. The counter starts again at zero.
func (v *Vault) changeFinish(ctx context.Context, s *session, cmd *protocol.SessionCommand) (*protocol.SessionReplyInner, error) {
	if s.change == nil {
		return nil, protocol.Errorf(protocol.CodeSequence, "change-finish without change-start")
	}
	if _, err := opaque.ParseRecord(cmd.Record); err != nil {
		return nil, protocol.Errorf(protocol.CodeMalformed, "registration record is not valid")
	}
	if cmd.Limit > v.opts.MaxLimit {
		return nil, protocol.Errorf(protocol.CodeLimit, "this vault allows at most %d attempts", v.opts.MaxLimit)
	}
	gen, err := newGeneration(v.opts.Rand)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternal, "randomness failed")
	}
	rec := &record{State: stateLive, Generation: gen, Limit: cmd.Limit,
		OPRFKey: append([]byte(nil), s.change[:]...), OPAQUE: cmd.Record, WrappedKey: append([]byte(nil), cmd.WrappedKey...)}
	defer rec.wipe()

	mu := v.lockUser(s.userID)
	old, err := v.currentRecord(s)
	if err == nil {
		old.wipe()
		err = v.putRecord(s.userID, rec)
		v.store.Shred()
	}
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	receipt, err := protocol.SignReceipt(v.id.signing, &protocol.Receipt{
		Kind: protocol.ReceiptChanged, UserID: s.userID, Generation: gen, Limit: rec.Limit,
		TriesLeft: rec.Limit, StoreSequence: seq, RecordHash: protocol.RecordHash(cmd.Record, cmd.WrappedKey, cmd.Limit),
	})
	if err != nil {
		return nil, err
	}
	return &protocol.SessionReplyInner{Receipt: &receipt}, nil
}

// deleteRecord erases the user's record and shreds every older copy.
func (v *Vault) deleteRecord(ctx context.Context, s *session) (*protocol.SessionReplyInner, error) {
	mu := v.lockUser(s.userID)
	rec, err := v.currentRecord(s)
	if err == nil {
		err = v.deleteUserRecord(s.userID)
		v.store.Shred()
	}
	mu.Unlock()
	if err != nil {
		return nil, err
	}
	limit := rec.Limit
	rec.wipe()
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	receipt, err := protocol.SignReceipt(v.id.signing, &protocol.Receipt{
		Kind: protocol.ReceiptDeleted, UserID: s.userID, Generation: s.generation, Limit: limit, StoreSequence: seq,
	})
	if err != nil {
		return nil, err
	}
	return &protocol.SessionReplyInner{Receipt: &receipt}, nil
}

// checkConfirmation checks the confirm field of a session command against
// the hash of the receipt that opened the session (a login's release, a
// realm's unlock). The first command must carry it; once confirmed, a
// retry may repeat it (a no-op, already is true) but never name another
// receipt. The comparison is constant time.
func checkConfirmation(confirmed bool, confirm, want []byte, opened string) (already bool, err error) {
	if confirmed {
		if len(confirm) != 0 && subtle.ConstantTimeCompare(confirm, want) != 1 {
			return true, protocol.Errorf(protocol.CodeAuthentication, "the confirmation names another receipt")
		}
		return true, nil
	}
	if len(confirm) == 0 {
		return false, protocol.Errorf(protocol.CodeSequence, "the first command of a session must confirm its %s", opened)
	}
	if subtle.ConstantTimeCompare(confirm, want) != 1 {
		return false, protocol.Errorf(protocol.CodeAuthentication, "the confirmation names another receipt")
	}
	return false, nil
}
