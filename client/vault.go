package client

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bytemare/ksf"
	bytemare "github.com/bytemare/opaque"
	"github.com/bytemare/opaque/message"
	"golang.org/x/text/unicode/norm"

	"github.com/cofferhsm/coffer/protocol"
)

// OPAQUE as protocol/SPEC.md fixes it: RFC 9807 OPAQUE-3DH with
// ristretto255-SHA512, context protocol.OPAQUEContext, client identity = user id,
// server identity = its public key (the default), and Argon2id key
// stretching with an empty salt and protocol's Argon2id parameters.
var (
	opaqueContext = []byte(protocol.OPAQUEContext)
	// argon2idParameters are bytemare's ksf.Argon2id (time, memory KiB,
	// threads), stated here so that a change of its defaults cannot
	// silently change ours.
	argon2idParameters = []uint64{protocol.Argon2idPasses, protocol.Argon2idMemoryKiB, protocol.Argon2idLanes}
)

const argon2idLength = protocol.Argon2idLength

func opaqueConfiguration() *bytemare.Configuration {
	return &bytemare.Configuration{
		OPRF:    bytemare.RistrettoSha512,
		AKE:     bytemare.RistrettoSha512,
		KSF:     ksf.Argon2id,
		KDF:     crypto.SHA512,
		MAC:     crypto.SHA512,
		Hash:    crypto.SHA512,
		Context: opaqueContext,
	}
}

func (c *Client) opaqueClient() (*bytemare.Client, *bytemare.ClientOptions, error) {
	oc, err := bytemare.NewClient(opaqueConfiguration())
	if err != nil {
		return nil, nil, err
	}
	params := argon2idParameters
	if c.ksf != nil {
		params = c.ksf
	}
	return oc, &bytemare.ClientOptions{KSFParameters: params, KSFLength: argon2idLength}, nil
}

// ErrEmptyPassword refuses an empty password.
var ErrEmptyPassword = errors.New("client: the password is empty")

// NormalizePassword is what OPAQUE gets: the password in Unicode NFC,
// UTF-8, so that the same password typed on two systems matches. It is
// always a new slice, which the caller may wipe without touching password
// (norm.NFC.Bytes returns its argument itself when it is already NFC).
func NormalizePassword(password []byte) ([]byte, error) {
	if len(password) == 0 {
		return nil, ErrEmptyPassword
	}
	return norm.NFC.Append(nil, password...), nil
}

// ChooseLimit returns the attempt limit to register: limit, or the default
// (10) capped at the vault's maximum when limit is 0.
func (c *Client) ChooseLimit(limit uint) (uint, error) {
	if limit == 0 {
		return min(protocol.DefaultLimit, c.id.MaxLimit), nil
	}
	if limit > c.id.MaxLimit {
		return 0, fmt.Errorf("client: attempt limit %d is above this vault's maximum of %d", limit, c.id.MaxLimit)
	}
	return limit, nil
}

// register runs one OPAQUE registration for password and returns the
// record and the wrapped key; send does the vault's half.
func (c *Client) newRecord(password []byte, k *BackupKey,
	evaluate func(blinded []byte) (evaluated, serverKey []byte, err error)) (record, wrapped []byte, err error) {
	pw, err := NormalizePassword(password)
	if err != nil {
		return nil, nil, err
	}
	defer clear(pw)
	oc, opts, err := c.opaqueClient()
	if err != nil {
		return nil, nil, err
	}
	defer oc.ClearState()
	req, err := oc.RegistrationInit(pw)
	if err != nil {
		return nil, nil, err
	}
	evaluated, serverKey, err := evaluate(req.Serialize())
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(serverKey, c.id.AKEKey) {
		return nil, nil, errors.New("client: the vault answered with another OPAQUE key than its pinned bundle's")
	}
	resp, err := oc.Deserialize.RegistrationResponse(append(bytes.Clone(evaluated), serverKey...))
	if err != nil {
		return nil, nil, fmt.Errorf("client: the vault's registration response: %w", err)
	}
	rec, exportKey, err := oc.RegistrationFinalize(resp, c.userID, nil, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("client: OPAQUE registration: %w", err)
	}
	defer clear(exportKey)
	key := k.Bytes()
	defer clear(key)
	wrapped, err = protocol.WrapKey(c.random, exportKey, c.userID, key)
	if err != nil {
		return nil, nil, err
	}
	return rec.Serialize(), wrapped, nil
}

// Register stores K in the vault behind password: OPAQUE registration inside
// the HPKE channel to the pinned vault, K wrapped under the export key. It
// succeeds only with the vault's signed receipt naming exactly the record
// sent. limit 0 means the default.
func (c *Client) Register(ctx context.Context, password []byte, k *BackupKey, limit uint) (*protocol.Receipt, error) {
	limit, err := c.ChooseLimit(limit)
	if err != nil {
		return nil, err
	}
	var (
		handle []byte
		keys   protocol.RegistrationKeys
	)
	defer keys.Wipe()
	record, wrapped, err := c.newRecord(password, k, func(blinded []byte) ([]byte, []byte, error) {
		enc, sealed, secret, err := protocol.SealRegistration(c.id.HPKEKey, &protocol.RegisterStartInner{UserID: c.userID, Blinded: blinded})
		if err != nil {
			return nil, nil, err
		}
		defer secret.Wipe()
		var start protocol.RegisterStartReply
		if err := c.conn.Call(ctx, protocol.TypeRegisterStart, &protocol.RegisterStart{UserID: c.userID, Enc: enc, Sealed: sealed}, &start); err != nil {
			if errors.Is(err, &protocol.Error{Code: protocol.CodeExists}) {
				return nil, nil, fmt.Errorf("client: this account already has a key in the vault (%w); "+
					"log in with its password, or delete it first", err)
			}
			return nil, nil, err
		}
		// The keys of this run come from the response nonce the vault drew
		// for this reply: a reply of another run, a replay's included,
		// does not open under them.
		if keys, err = secret.Keys(start.ResponseNonce); err != nil {
			return nil, nil, err
		}
		var inner protocol.RegisterStartReplyInner
		if err := keys.StartReply.OpenMessage(start.Handle, start.Sealed, &inner); err != nil {
			return nil, nil, fmt.Errorf("client: the vault's registration reply does not open: %w", err)
		}
		handle = start.Handle
		return inner.Evaluated, inner.ServerPublicKey, nil
	})
	if err != nil {
		return nil, err
	}
	finish, err := keys.Finish.SealMessage(handle, &protocol.RegisterFinishInner{Record: record, WrappedKey: wrapped, Limit: limit})
	if err != nil {
		return nil, err
	}
	var done protocol.SealedReply
	if err := c.conn.Call(ctx, protocol.TypeRegisterFinish, &protocol.RegisterFinish{Handle: handle, Sealed: finish}, &done); err != nil {
		return nil, err
	}
	var sr protocol.SignedReceipt
	if err := keys.FinishReply.OpenMessage(handle, done.Sealed, &sr); err != nil {
		return nil, fmt.Errorf("client: %w: the sealed receipt does not open: %v", ErrBadReceipt, err)
	}
	r, err := c.verify(&sr, protocol.ReceiptRegistered)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(r.RecordHash, protocol.RecordHash(record, wrapped, limit)) || r.Limit != limit {
		return nil, fmt.Errorf("client: %w: it names another record than the one sent", ErrBadReceipt)
	}
	if err := c.accept(r); err != nil {
		return nil, err
	}
	c.cfg.Limit, c.cfg.Generation = limit, r.Generation
	return r, nil
}

// Login errors. A *LoginError wraps one of them.
var (
	ErrWrongPassword = errors.New("wrong password")
	ErrLocked        = errors.New("the vault has erased this account's key for ever")
	// ErrLockedForNow: the account is locked, but the login whose attempt
	// reached the limit may still finish, and with the right password bring
	// the key back with one try left.
	ErrLockedForNow = errors.New("the account is locked for now")
	// ErrLockedDuringLogin: the password was right, but other attempts
	// locked the account between this login's first and last message, so
	// the vault did not release the key.
	ErrLockedDuringLogin = errors.New("the password was right, but other attempts locked the account during this login")
	// ErrNotHeld: the vault's receipt is for another registration than the
	// one this device knows, so the vault no longer holds this account's
	// key (it was deleted or replaced); the password was not checked.
	ErrNotHeld = errors.New("the vault no longer holds this account's key")
)

// LoginError is a login the vault did not release K for. Its Receipt is
// the vault's signed account of the attempt.
type LoginError struct {
	Err     error             // one of the Err… above
	Receipt *protocol.Receipt // the attempt or locked receipt
	// NotFromThisDevice counts attempts counted on the account since this
	// device's last receipt that this device did not make; known is false
	// on a device that has seen no receipt of this registration.
	NotFromThisDevice uint64
	NotFromThisKnown  bool
}

func (e *LoginError) Unwrap() error { return e.Err }

// Locked reports whether the key is gone for ever: the account was locked
// with no login left that could bring it back, or this wrong password was
// the last try.
func (e *LoginError) Locked() bool { return errors.Is(e.Err, ErrLocked) }

func (e *LoginError) Error() string {
	r := e.Receipt
	msg := ""
	switch {
	case errors.Is(e.Err, ErrNotHeld):
		msg = fmt.Sprintf("the vault no longer holds this account's key as this device knows it: its receipt is for "+
			"registration %x, not the one this device registered or last opened. The key was deleted (from another device, "+
			"or by the operator dropping it), or replaced or given a new password from another device; your password was not "+
			"checked against the key this device knows, and the password you typed does not open what the vault holds now. "+
			"Backups made to a deleted key open only with an age identity exported earlier (coffer key export-age)", r.Generation)
	case errors.Is(e.Err, ErrLockedDuringLogin):
		msg = "your password was right, but other attempts locked this account while this login was under way, " +
			"so the vault did not release the key"
		if r != nil && r.TriesLeft == 0 {
			msg += " (this login's own attempt was the last try)"
		}
		msg += ". Run the command again: if a login that can still restore the account is in flight, it will say so"
	case errors.Is(e.Err, ErrLockedForNow):
		msg = fmt.Sprintf("this account is locked for now: the attempts counted since its last successful login reached "+
			"the limit of %d, and the login that made the last one (perhaps another of yours) can still restore the key within %s "+
			"if it has the right password. If it does not, the vault erases the key when that time is up; run the command "+
			"again then to see which", r.Limit, (time.Duration(r.RevivableMillis) * time.Millisecond).Round(time.Second))
	case errors.Is(e.Err, ErrLocked):
		failed := r.FailedSinceSuccess
		if r.Kind == protocol.ReceiptAttempt {
			failed++ // this one
			msg = fmt.Sprintf("wrong password, and that was the last try: the vault has erased the key for ever "+
				"(%s since the last successful login). No password can get it back; "+
				"backups can be opened only with an age identity exported earlier (coffer key export-age)", Plural(failed, "failed attempt"))
		} else {
			msg = fmt.Sprintf("this account is locked: after %s the vault erased the key for ever. "+
				"No password can get it back; backups can be opened only with an age identity exported earlier (coffer key export-age)", Plural(failed, "failed attempt"))
		}
	default:
		msg = fmt.Sprintf("wrong password: %d of %d tries left; %s since the last successful login, this one included "+
			"(the vault counts every attempt; any you did not make were made by someone else, possibly the operator)",
			r.TriesLeft, r.Limit, Plural(r.FailedSinceSuccess+1, "failed attempt"))
	}
	if e.NotFromThisKnown && e.NotFromThisDevice > 0 {
		msg += fmt.Sprintf(". %s since this device last used the vault %s not made from this device",
			Plural(uint(e.NotFromThisDevice), "attempt"), map[bool]string{true: "was", false: "were"}[e.NotFromThisDevice == 1])
	}
	return msg
}

// Plural writes "1 failed attempt", "2 failed attempts".
func Plural(n uint, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Login proves the password to the vault (OPAQUE KE1 → KE2 → KE3) and, if
// it is right, opens a session and unwraps K. It runs each step once: a
// login that failed in transit is started again by the caller, never by
// this code, since the vault may have counted it. The two answers to the
// first message that promise nothing was counted come back as a
// *NotCountedError.
//
// A wrong password gives a *LoginError with the vault's receipt (tries
// left, failed attempts since the last success). On the wire the client
// sends a KE3 whether or not its envelope opened, so that a wrong password
// and a failed server check look the same.
func (c *Client) Login(ctx context.Context, password []byte) (*Session, error) {
	pw, err := NormalizePassword(password)
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	oc, opts, err := c.opaqueClient()
	if err != nil {
		return nil, err
	}
	defer oc.ClearState()
	ke1msg, err := oc.GenerateKE1(pw)
	if err != nil {
		return nil, err
	}
	ke1 := ke1msg.Serialize()
	var start protocol.LoginStartReply
	if err := c.conn.Call(ctx, protocol.TypeLoginStart, &protocol.LoginStart{UserID: c.userID, KE1: ke1}, &start); err != nil {
		return nil, notCounted(err)
	}
	attempt, err := c.verify(&start.Receipt, protocol.ReceiptAttempt, protocol.ReceiptLocked)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(attempt.RequestHash, protocol.RequestHash(ke1)) {
		return nil, fmt.Errorf("client: %w: the attempt receipt is for another login (request hash)", ErrBadReceipt)
	}
	if err := c.sequence(attempt.StoreSequence); err != nil {
		return nil, err
	}
	if err := c.checkTotals(attempt); err != nil {
		return nil, err
	}
	notMine, notMineKnown := c.notFromThisDevice(attempt)
	if err := c.accept(attempt); err != nil {
		return nil, err
	}
	loginError := func(e error) *LoginError {
		return &LoginError{Err: e, Receipt: attempt, NotFromThisDevice: notMine, NotFromThisKnown: notMineKnown}
	}

	var (
		ke3                   []byte
		sessionKey, exportKey []byte
		ferr                  error
	)
	// A receipt for another registration than the one this device knows:
	// the key was deleted (an unknown user's receipt looks the same), or
	// replaced, or given a new password from another device. Only the last
	// can still open, so the password is tried all the same.
	otherRegistration := c.cfg.Generation != 0 && attempt.Generation != c.cfg.Generation
	switch {
	case otherRegistration && attempt.Kind == protocol.ReceiptLocked:
		ferr = ErrNotHeld
	case attempt.Kind == protocol.ReceiptLocked && attempt.RevivableMillis > 0:
		ferr = ErrLockedForNow
	case attempt.Kind == protocol.ReceiptLocked:
		ferr = ErrLocked
	default:
		if ke2, err := oc.Deserialize.KE2(start.KE2); err != nil {
			ferr = fmt.Errorf("client: the vault's KE2 does not parse: %w", err)
		} else {
			var ke3msg *message.KE3
			ke3msg, sessionKey, exportKey, ferr = oc.GenerateKE3(ke2, c.userID, nil, opts)
			if ferr == nil {
				ke3 = ke3msg.Serialize()
			}
		}
	}
	defer clear(sessionKey)
	defer clear(exportKey)
	if ferr != nil {
		// The same on the wire as a right password: a KE3, here random,
		// which also makes the vault forget this login at once.
		ke3 = make([]byte, protocol.KE3Size)
		if _, err := io.ReadFull(c.random, ke3); err != nil {
			return nil, err
		}
	}
	var done protocol.SealedReply
	err = c.conn.Call(ctx, protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: ke3}, &done)
	switch {
	case errors.Is(ferr, ErrNotHeld), errors.Is(ferr, ErrLocked), errors.Is(ferr, ErrLockedForNow):
		return nil, loginError(ferr)
	case ferr != nil && errors.Is(ferr, bytemare.ErrAuthentication) && otherRegistration:
		return nil, loginError(ErrNotHeld)
	case ferr != nil && errors.Is(ferr, bytemare.ErrAuthentication):
		if attempt.TriesLeft == 0 {
			// The last try, and the wrong password: the vault forgets the
			// only copy of the key when it sees this random KE3.
			return nil, loginError(ErrLocked)
		}
		return nil, loginError(ErrWrongPassword)
	case ferr != nil:
		return nil, ferr
	case errors.Is(err, &protocol.Error{Code: protocol.CodeLocked}):
		// The envelope opened: the password was right.
		return nil, loginError(ErrLockedDuringLogin)
	case errors.Is(err, &protocol.Error{Code: protocol.CodeAuthentication}):
		return nil, fmt.Errorf("client: the vault refused a login whose password this client verified: "+
			"the request was altered on the way (it counted as an attempt): %w", err)
	case errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}):
		return nil, fmt.Errorf("client: the login expired, the vault restarted or the account changed before it finished "+
			"(it counted as an attempt); try again: %w", err)
	case err != nil:
		return nil, err
	}

	s := &Session{c: c, handle: start.Handle, next: 1}
	if s.keys, err = protocol.DeriveSessionKeys(sessionKey, start.Handle); err != nil {
		return nil, err
	}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&s.keys.ToClient, 0, start.Handle, done.Sealed, &inner); err != nil {
		s.wipe()
		return nil, fmt.Errorf("client: the vault's login reply does not open: %w", err)
	}
	released, err := c.verify(inner.Receipt, protocol.ReceiptReleased)
	if err == nil && (!bytes.Equal(released.RequestHash, attempt.RequestHash) || released.Generation != attempt.Generation) {
		err = fmt.Errorf("client: %w: the release receipt is for another login (request hash)", ErrBadReceipt)
	}
	if err == nil {
		err = c.accept(released)
	}
	if err != nil {
		s.wipe()
		return nil, err
	}
	key, err := protocol.UnwrapKey(exportKey, c.userID, inner.WrappedKey)
	if err != nil {
		s.wipe()
		return nil, fmt.Errorf("client: the released key does not unwrap: %w", err)
	}
	defer clear(key)
	if s.key, err = BackupKeyFromBytes(key); err != nil {
		s.wipe()
		return nil, err
	}
	// A new device learns which registration holds its key; after a
	// password change elsewhere, so does an old one.
	c.cfg.Generation = released.Generation
	s.exportKey = bytes.Clone(exportKey)
	s.confirm = protocol.ReceiptHash(inner.Receipt)
	s.Released = released
	s.NotFromThisDevice, s.NotFromThisKnown = notMine, notMineKnown
	return s, nil
}

// Session is an open vault session after a successful login. Commands are
// sealed under keys derived from the OPAQUE session key; the vault ends the
// session after change-password, delete or close, or 2 minutes idle.
type Session struct {
	c         *Client
	handle    []byte
	keys      protocol.SessionKeys
	next      uint64
	exportKey []byte
	key       *BackupKey
	ended     bool
	// confirm is the hash of the release receipt, which commands carry
	// until one is answered: the vault counts the login as a success only
	// once it sees it, proof that this client received the release.
	confirm []byte

	// Released is the vault's receipt for this login: its
	// FailedSinceSuccess counts the wrong guesses made since the previous
	// successful login, by anyone.
	Released *protocol.Receipt
	// NotFromThisDevice counts the attempts since this device's last
	// receipt that it did not make (NotFromThisKnown: it had one).
	NotFromThisDevice uint64
	NotFromThisKnown  bool
}

// BackupKey is K, released by the vault and unwrapped. It is wiped by Close.
func (s *Session) BackupKey() *BackupKey { return s.key }

func (s *Session) wipe() {
	s.keys.Wipe()
	clear(s.exportKey)
	if s.key != nil {
		s.key.Wipe()
	}
	s.ended = true
}

func (s *Session) command(ctx context.Context, cmd *protocol.SessionCommand) (*protocol.SessionReplyInner, error) {
	if s.ended {
		return nil, errors.New("client: the session has ended")
	}
	seq := s.next
	s.next++
	if s.confirm != nil {
		c := *cmd
		c.Confirm = s.confirm
		cmd = &c
	}
	sealed, err := protocol.SealMessage(&s.keys.ToVault, seq, s.handle, cmd)
	if err != nil {
		return nil, err
	}
	var reply protocol.SessionReply
	if err := s.c.conn.Call(ctx, protocol.TypeSession, &protocol.Session{Handle: s.handle, Seq: seq, Sealed: sealed}, &reply); err != nil {
		return nil, err
	}
	if reply.Seq != seq {
		return nil, fmt.Errorf("client: session reply for sequence %d, sent %d", reply.Seq, seq)
	}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&s.keys.ToClient, seq, s.handle, reply.Sealed, &inner); err != nil {
		return nil, fmt.Errorf("client: the vault's session reply does not open: %w", err)
	}
	s.confirm = nil // the vault answered: the login is confirmed
	return &inner, nil
}

// ChangePassword registers newPassword for the same K (and the same attempt
// limit, or limit if not 0), within this session, and checks the vault's
// receipt names the new record. The session ends.
func (s *Session) ChangePassword(ctx context.Context, newPassword []byte, limit uint) (*protocol.Receipt, error) {
	if limit == 0 {
		limit = s.Released.Limit
	}
	limit, err := s.c.ChooseLimit(limit)
	if err != nil {
		return nil, err
	}
	record, wrapped, err := s.c.newRecord(newPassword, s.key, func(blinded []byte) ([]byte, []byte, error) {
		resp, err := s.command(ctx, &protocol.SessionCommand{Command: protocol.CommandChangeStart, Blinded: blinded})
		if err != nil {
			return nil, nil, err
		}
		return resp.Evaluated, resp.ServerPublicKey, nil
	})
	if err != nil {
		return nil, err
	}
	done, err := s.command(ctx, &protocol.SessionCommand{Command: protocol.CommandChangeFinish, Record: record, WrappedKey: wrapped, Limit: limit})
	s.ended = true
	if err != nil {
		return nil, err
	}
	r, err := s.c.verify(done.Receipt, protocol.ReceiptChanged)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(r.RecordHash, protocol.RecordHash(record, wrapped, limit)) || r.Limit != limit {
		return nil, fmt.Errorf("client: %w: it names another record than the one sent", ErrBadReceipt)
	}
	if err := s.c.accept(r); err != nil {
		return nil, err
	}
	s.c.cfg.Limit, s.c.cfg.Generation = limit, r.Generation
	return r, nil
}

// Delete erases the account's record in the vault, for ever, and checks the
// vault's receipt. The session ends.
func (s *Session) Delete(ctx context.Context) (*protocol.Receipt, error) {
	done, err := s.command(ctx, &protocol.SessionCommand{Command: protocol.CommandDelete})
	s.ended = true
	if err != nil {
		return nil, err
	}
	r, err := s.c.verify(done.Receipt, protocol.ReceiptDeleted)
	if err != nil {
		return nil, err
	}
	return r, s.c.accept(r)
}

// Close ends the session at the vault (unless it already ended) and wipes
// K and the session keys.
func (s *Session) Close(ctx context.Context) error {
	var err error
	if !s.ended {
		_, err = s.command(ctx, &protocol.SessionCommand{Command: protocol.CommandClose})
	}
	s.wipe()
	return err
}
