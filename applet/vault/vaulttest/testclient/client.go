// Package testclient is a protocol-level Coffer client for tests: it speaks to
// anything that answers protocol envelopes (a Vault in the same process, the
// software vault over a socket, the firmware in QEMU) and checks every
// receipt against the identity it pinned.
//
// It uses the vault's own portable OPAQUE client, so that it runs on 32-bit
// ARM too; the product's client (client/) uses bytemare/opaque, which is the
// independent implementation the vault is also tested against. Passwords are
// stretched with the function the test gives (the identity by default), so
// tests stay fast; the key-stretching function is the client's business and
// the vault cannot tell.
package testclient

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// RoundTrip sends one encoded request and returns the encoded reply.
type RoundTrip func(ctx context.Context, request []byte) ([]byte, error)

// Client is one user of one vault.
type Client struct {
	RoundTrip RoundTrip
	Identity  *protocol.Identity // pinned; verified by the caller
	UserID    []byte
	Stretch   opaque.KeyStretch
	Rand      io.Reader
}

var opaqueContext = []byte(protocol.OPAQUEContext)

// ErrWrongPassword is returned by Login when the vault did not accept the
// password (or the record is fake or locked: the client cannot tell, and
// neither can the host).
var ErrWrongPassword = errors.New("testclient: wrong password")

func (c *Client) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Client) call(ctx context.Context, t protocol.Type, req, reply protocol.Message) error {
	b, err := protocol.Encode(t, req)
	if err != nil {
		return err
	}
	out, err := c.RoundTrip(ctx, b)
	if err != nil {
		return err
	}
	return protocol.Decode(out, t, reply)
}

// FetchIdentity asks the vault for its bundle and verifies it against the
// provisioning key.
func FetchIdentity(ctx context.Context, rt RoundTrip, provisioningKey ed25519.PublicKey) (*protocol.Identity, error) {
	c := &Client{RoundTrip: rt}
	var signed protocol.SignedIdentity
	if err := c.call(ctx, protocol.TypeIdentity, &protocol.Empty{}, &signed); err != nil {
		return nil, err
	}
	return signed.Verify(provisioningKey)
}

func (c *Client) verify(sr *protocol.SignedReceipt, want protocol.ReceiptKind) (*protocol.Receipt, error) {
	r, err := sr.Verify(c.Identity.SigningKey)
	if err != nil {
		return nil, err
	}
	if r.Kind != want || string(r.UserID) != string(c.UserID) {
		return nil, fmt.Errorf("testclient: receipt is %d for %q, want %d for %q", r.Kind, r.UserID, want, c.UserID)
	}
	return r, nil
}

// Register creates the user's record holding backupKey wrapped under the
// password's export key, and returns the vault's verified receipt.
func (c *Client) Register(ctx context.Context, password, backupKey []byte, limit uint) (*protocol.Receipt, error) {
	reg, blinded, err := opaque.NewClientRegistration(c.rand(), password)
	if err != nil {
		return nil, err
	}
	enc, sealed, secret, err := protocol.SealRegistration(c.Identity.HPKEKey, &protocol.RegisterStartInner{UserID: c.UserID, Blinded: blinded})
	if err != nil {
		return nil, err
	}
	defer secret.Wipe()
	var start protocol.RegisterStartReply
	if err := c.call(ctx, protocol.TypeRegisterStart, &protocol.RegisterStart{UserID: c.UserID, Enc: enc, Sealed: sealed}, &start); err != nil {
		return nil, err
	}
	keys, err := secret.Keys(start.ResponseNonce)
	if err != nil {
		return nil, err
	}
	defer keys.Wipe()
	var resp protocol.RegisterStartReplyInner
	if err := keys.StartReply.OpenMessage(start.Handle, start.Sealed, &resp); err != nil {
		return nil, err
	}
	if string(resp.ServerPublicKey) != string(c.Identity.AKEKey) {
		return nil, errors.New("testclient: registration answered with another AKE key than the pinned one")
	}
	rec, exportKey, err := reg.Finalize(c.rand(), append(resp.Evaluated, resp.ServerPublicKey...), opaque.Identities{Client: c.UserID}, c.Stretch)
	if err != nil {
		return nil, err
	}
	defer clear(exportKey)
	wrapped, err := protocol.WrapKey(c.rand(), exportKey, c.UserID, backupKey)
	if err != nil {
		return nil, err
	}
	finish, err := keys.Finish.SealMessage(start.Handle, &protocol.RegisterFinishInner{Record: rec.Bytes(), WrappedKey: wrapped, Limit: limit})
	if err != nil {
		return nil, err
	}
	var done protocol.SealedReply
	if err := c.call(ctx, protocol.TypeRegisterFinish, &protocol.RegisterFinish{Handle: start.Handle, Sealed: finish}, &done); err != nil {
		return nil, err
	}
	var sr protocol.SignedReceipt
	if err := keys.FinishReply.OpenMessage(start.Handle, done.Sealed, &sr); err != nil {
		return nil, err
	}
	r, err := c.verify(&sr, protocol.ReceiptRegistered)
	if err != nil {
		return nil, err
	}
	if string(r.RecordHash) != string(protocol.RecordHash(rec.Bytes(), wrapped, limit)) || r.Limit != limit {
		return nil, errors.New("testclient: registration receipt names another record")
	}
	return r, nil
}

// Login runs KE1 → KE2 → KE3. On success it returns the open session with
// the unwrapped backup key; on a wrong password, ErrWrongPassword with the
// attempt receipt (tries left) still returned.
func (c *Client) Login(ctx context.Context, password []byte) (*Session, *protocol.Receipt, error) {
	login, ke1, err := opaque.NewClientLogin(c.rand(), password)
	if err != nil {
		return nil, nil, err
	}
	var start protocol.LoginStartReply
	if err := c.call(ctx, protocol.TypeLoginStart, &protocol.LoginStart{UserID: c.UserID, KE1: ke1}, &start); err != nil {
		return nil, nil, err
	}
	attempt, err := start.Receipt.Verify(c.Identity.SigningKey)
	if err != nil {
		return nil, nil, err
	}
	if string(attempt.RequestHash) != string(protocol.RequestHash(ke1)) || string(attempt.UserID) != string(c.UserID) {
		return nil, nil, errors.New("testclient: attempt receipt is not for this login")
	}
	ke3, sessionKey, exportKey, ferr := login.Finish(start.KE2, opaque.Identities{Client: c.UserID}, opaqueContext, c.Stretch)
	defer clear(sessionKey)
	defer clear(exportKey)
	if ferr != nil {
		// Behave the same whether the envelope or the server's MAC failed:
		// send a KE3 anyway, which the vault counts as a failure and which
		// makes it forget this login's state at once.
		ke3 = make([]byte, protocol.KE3Size)
		if _, err := io.ReadFull(c.rand(), ke3); err != nil {
			return nil, attempt, err
		}
	}
	var done protocol.SealedReply
	err = c.call(ctx, protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: ke3}, &done)
	if ferr != nil || errors.Is(err, &protocol.Error{Code: protocol.CodeAuthentication}) {
		return nil, attempt, ErrWrongPassword
	}
	if err != nil {
		return nil, attempt, err
	}
	keys, err := protocol.DeriveSessionKeys(sessionKey, start.Handle)
	if err != nil {
		return nil, attempt, err
	}
	s := &Session{c: c, handle: start.Handle, keys: keys, next: 1}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&keys.ToClient, 0, start.Handle, done.Sealed, &inner); err != nil {
		return nil, attempt, err
	}
	if inner.Receipt == nil {
		return nil, attempt, errors.New("testclient: release without receipt")
	}
	s.release = inner.Receipt
	s.confirm = protocol.ReceiptHash(inner.Receipt)
	if s.Released, err = c.verify(inner.Receipt, protocol.ReceiptReleased); err != nil {
		return nil, attempt, err
	}
	if s.BackupKey, err = protocol.UnwrapKey(exportKey, c.UserID, inner.WrappedKey); err != nil {
		return nil, attempt, err
	}
	s.exportKey = append([]byte(nil), exportKey...)
	return s, attempt, nil
}

// Session is an open session after a successful login.
type Session struct {
	c         *Client
	handle    []byte
	keys      protocol.SessionKeys
	next      uint64
	exportKey []byte
	confirm   []byte // the login's confirmation, which the command of sequence 1 carries
	release   *protocol.SignedReceipt

	BackupKey []byte
	Released  *protocol.Receipt
}

// Command sends one sealed command and opens the reply. The session's first
// command carries the login's confirmation.
func (s *Session) Command(ctx context.Context, cmd *protocol.SessionCommand) (*protocol.SessionReplyInner, error) {
	cmd = s.withConfirm(cmd, s.next)
	sealed, err := protocol.SealMessage(&s.keys.ToVault, s.next, s.handle, cmd)
	if err != nil {
		return nil, err
	}
	req := &protocol.Session{Handle: s.handle, Seq: s.next, Sealed: sealed}
	s.next++
	var reply protocol.SessionReply
	if err := s.c.call(ctx, protocol.TypeSession, req, &reply); err != nil {
		return nil, err
	}
	if reply.Seq != req.Seq {
		return nil, errors.New("testclient: session reply for another sequence")
	}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&s.keys.ToClient, reply.Seq, s.handle, reply.Sealed, &inner); err != nil {
		return nil, err
	}
	return &inner, nil
}

// SealedRequest returns an encoded session request without sending it, for
// tests that replay or reorder them.
func (s *Session) SealedRequest(cmd *protocol.SessionCommand, seq uint64) ([]byte, error) {
	return s.SealedRequestAsIs(s.withConfirm(cmd, seq), seq)
}

// SealedRequestAsIs is SealedRequest without the confirmation added, for
// tests of the confirmation itself.
func (s *Session) SealedRequestAsIs(cmd *protocol.SessionCommand, seq uint64) ([]byte, error) {
	sealed, err := protocol.SealMessage(&s.keys.ToVault, seq, s.handle, cmd)
	if err != nil {
		return nil, err
	}
	return protocol.Encode(protocol.TypeSession, &protocol.Session{Handle: s.handle, Seq: seq, Sealed: sealed})
}

// withConfirm adds the login's confirmation to the command of sequence 1.
func (s *Session) withConfirm(cmd *protocol.SessionCommand, seq uint64) *protocol.SessionCommand {
	if seq != 1 {
		return cmd
	}
	c := *cmd
	c.Confirm = s.confirm
	return &c
}

// Confirm confirms the login on its own, with a close command, which ends
// the session: what a client does when it needs nothing more.
func (s *Session) Confirm(ctx context.Context) error {
	_, err := s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandClose})
	return err
}

// ReleaseReceipt is the signed receipt the login released the key with.
func (s *Session) ReleaseReceipt() *protocol.SignedReceipt { return s.release }

// Handle is the session's handle.
func (s *Session) Handle() []byte { return s.handle }

// Release fetches the wrapped key again and unwraps it.
func (s *Session) Release(ctx context.Context) ([]byte, *protocol.Receipt, error) {
	inner, err := s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandRelease})
	if err != nil {
		return nil, nil, err
	}
	if inner.Receipt == nil {
		return nil, nil, errors.New("testclient: release without receipt")
	}
	r, err := s.c.verify(inner.Receipt, protocol.ReceiptReleased)
	if err != nil {
		return nil, nil, err
	}
	k, err := protocol.UnwrapKey(s.exportKey, s.c.UserID, inner.WrappedKey)
	return k, r, err
}

// ChangePassword registers a new password for the same backup key.
func (s *Session) ChangePassword(ctx context.Context, newPassword []byte, limit uint) (*protocol.Receipt, error) {
	reg, blinded, err := opaque.NewClientRegistration(s.c.rand(), newPassword)
	if err != nil {
		return nil, err
	}
	resp, err := s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandChangeStart, Blinded: blinded})
	if err != nil {
		return nil, err
	}
	if string(resp.ServerPublicKey) != string(s.c.Identity.AKEKey) {
		return nil, errors.New("testclient: change answered with another AKE key than the pinned one")
	}
	rec, exportKey, err := reg.Finalize(s.c.rand(), append(resp.Evaluated, resp.ServerPublicKey...), opaque.Identities{Client: s.c.UserID}, s.c.Stretch)
	if err != nil {
		return nil, err
	}
	defer clear(exportKey)
	wrapped, err := protocol.WrapKey(s.c.rand(), exportKey, s.c.UserID, s.BackupKey)
	if err != nil {
		return nil, err
	}
	done, err := s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandChangeFinish, Record: rec.Bytes(), WrappedKey: wrapped, Limit: limit})
	if err != nil {
		return nil, err
	}
	if done.Receipt == nil {
		return nil, errors.New("testclient: change without receipt")
	}
	r, err := s.c.verify(done.Receipt, protocol.ReceiptChanged)
	if err != nil {
		return nil, err
	}
	if string(r.RecordHash) != string(protocol.RecordHash(rec.Bytes(), wrapped, limit)) {
		return nil, errors.New("testclient: change receipt names another record")
	}
	return r, nil
}

// Delete erases the record.
func (s *Session) Delete(ctx context.Context) (*protocol.Receipt, error) {
	done, err := s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandDelete})
	if err != nil {
		return nil, err
	}
	if done.Receipt == nil {
		return nil, errors.New("testclient: delete without receipt")
	}
	return s.c.verify(done.Receipt, protocol.ReceiptDeleted)
}

// UserStatus asks for the user's signed attempt count (it counts nothing)
// and verifies it against the pinned signing key and the request.
func (c *Client) UserStatus(ctx context.Context) (*protocol.UserStatus, *protocol.UserStatusReply, error) {
	req := protocol.NewUserStatusRequest(c.UserID)
	var reply protocol.UserStatusReply
	if err := c.call(ctx, protocol.TypeUserStatus, req, &reply); err != nil {
		return nil, nil, err
	}
	st, err := reply.Verify(c.Identity.SigningKey, req)
	return st, &reply, err
}
