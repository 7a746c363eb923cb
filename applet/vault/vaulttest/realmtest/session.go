package realmtest

import (
	"context"
	"crypto/rand"

	"github.com/cofferhsm/coffer/protocol"
)

// Session is an open realm session. The first command carries the
// confirmation of the unlock receipt unless NoConfirm is set.
type Session struct {
	realm     *Realm
	Handle    []byte
	Keys      protocol.SessionKeys
	Next      uint64
	Unlocked  protocol.SignedRealmReceipt // the unlock's receipt, which the first command confirms
	Receipt   *protocol.RealmReceipt
	Confirmed bool // a command was answered since the confirmation was sent
	NoConfirm bool
}

// Confirmation is the hash the first command must carry (N5).
func (s *Session) Confirmation() []byte { return protocol.RealmReceiptHash(&s.Unlocked) }

// SealCommand seals cmd under the next sequence number without sending it;
// it fills in a client nonce and, until a command was answered, the
// confirmation.
func (s *Session) SealCommand(cmd protocol.RealmCommand) (*protocol.Session, *protocol.RealmCommand, error) {
	if cmd.ClientNonce == nil {
		cmd.ClientNonce = make([]byte, protocol.ClientNonceSize)
		if _, err := rand.Read(cmd.ClientNonce); err != nil {
			return nil, nil, err
		}
	}
	if cmd.Confirm == nil && !s.Confirmed && !s.NoConfirm {
		cmd.Confirm = s.Confirmation()
	}
	sealed, err := protocol.SealMessage(&s.Keys.ToVault, s.Next, s.Handle, &cmd)
	if err != nil {
		return nil, nil, err
	}
	m := &protocol.Session{Handle: s.Handle, Seq: s.Next, Sealed: sealed}
	s.Next++
	return m, &cmd, nil
}

// Deliver sends a sealed command and checks its receipt.
func (s *Session) Deliver(ctx context.Context, m *protocol.Session, cmd *protocol.RealmCommand, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	b, err := protocol.Encode(protocol.TypeRealmSession, m)
	if err != nil {
		return nil, err
	}
	out, err := s.realm.RoundTrip(ctx, b)
	if err != nil {
		return nil, err
	}
	var reply protocol.SessionReply
	if err := protocol.Decode(out, protocol.TypeRealmSession, &reply); err != nil {
		return nil, err
	}
	var inner protocol.RealmReceiptReply
	if err := protocol.OpenMessage(&s.Keys.ToClient, m.Seq, m.Handle, reply.Sealed, &inner); err != nil {
		return nil, err
	}
	rc, err := s.realm.Verify(&inner.Receipt, protocol.RealmCommandHash(m.Handle, m.Seq, m.Sealed), cmd.ClientNonce, kinds...)
	if err != nil {
		return nil, err
	}
	if len(cmd.Confirm) != 0 {
		s.Confirmed = true
	}
	return rc, nil
}

// Command seals, sends and checks one command.
func (s *Session) Command(ctx context.Context, cmd protocol.RealmCommand, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	m, sealed, err := s.SealCommand(cmd)
	if err != nil {
		return nil, err
	}
	return s.Deliver(ctx, m, sealed, kinds...)
}

// Status asks for the record's state.
func (s *Session) Status(ctx context.Context) (*protocol.RealmReceipt, error) {
	return s.Command(ctx, protocol.RealmCommand{Command: protocol.RealmStatus}, protocol.RealmReceiptStatus)
}

// Close ends the session.
func (s *Session) Close(ctx context.Context) (*protocol.RealmReceipt, error) {
	return s.Command(ctx, protocol.RealmCommand{Command: protocol.RealmClose}, protocol.RealmReceiptStatus)
}

// Commit commits versionID.
func (s *Session) Commit(ctx context.Context, versionID []byte) (*protocol.RealmReceipt, error) {
	return s.Command(ctx, protocol.RealmCommand{Command: protocol.RealmCommit, VersionID: versionID}, protocol.RealmReceiptCommitted)
}

// PutVersion puts material pending.
func (s *Session) PutVersion(ctx context.Context, material protocol.VersionMaterial) (*protocol.RealmReceipt, error) {
	return s.Command(ctx, protocol.RealmCommand{Command: protocol.RealmPutVersion, Material: &material}, protocol.RealmReceiptRegistered)
}

// Delete erases the record.
func (s *Session) Delete(ctx context.Context) (*protocol.RealmReceipt, error) {
	return s.Command(ctx, protocol.RealmCommand{Command: protocol.RealmDelete}, protocol.RealmReceiptDeleted)
}
