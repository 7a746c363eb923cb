// Package realmtest drives realms (protocol/REALMS.md) at the protocol
// level, for tests: one Realm per vault and account, speaking types 16-21
// and checking every receipt's signature and binding to its request; and a
// Version that deals a t-of-n key, signs its manifest and derives the
// material and unlock keys of each realm, as a registering client does.
//
// It is test support, not a client: it refuses nothing a test may want to
// send, stretches passwords with a fast function unless told otherwise,
// and leaves every policy (which realms, fallback, tripwires) to the caller.
package realmtest

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// RoundTrip sends one encoded request and returns the encoded reply.
type RoundTrip func(ctx context.Context, request []byte) ([]byte, error)

// Realm is one account (UserID) at one realm, whose identity the test
// pinned.
type Realm struct {
	RoundTrip RoundTrip
	Identity  *protocol.Identity
	UserID    []byte
}

// Sent is what the client keeps of one sealed request: the secret its reply
// is opened with and the nonce its receipt must carry.
type Sent struct {
	Request     []byte // the encoded envelope as sent
	Secret      *protocol.RealmSecret
	ClientNonce []byte
}

// Seal builds a sealed request of type t without sending it.
func (r *Realm) Seal(t protocol.Type, body protocol.Message) (*Sent, error) {
	nonce := make([]byte, protocol.ClientNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	req, secret, err := protocol.SealRealmRequest(r.Identity.HPKEKey, t, r.UserID, nonce, body)
	if err != nil {
		return nil, err
	}
	b, err := protocol.Encode(t, req)
	if err != nil {
		return nil, err
	}
	return &Sent{Request: b, Secret: secret, ClientNonce: nonce}, nil
}

// Deliver sends a sealed request (again, if the test wants a replay) and
// opens its reply into inner. An error reply is a *protocol.Error.
func (r *Realm) Deliver(ctx context.Context, s *Sent, inner protocol.Message) error {
	out, err := r.RoundTrip(ctx, s.Request)
	if err != nil {
		return err
	}
	var reply protocol.RealmReply
	if err := protocol.Decode(out, s.Secret.Type, &reply); err != nil {
		return err
	}
	return s.Secret.OpenReply(&reply, inner)
}

// Call seals body, sends it and opens the reply.
func (r *Realm) Call(ctx context.Context, t protocol.Type, body, inner protocol.Message) (*Sent, error) {
	s, err := r.Seal(t, body)
	if err != nil {
		return nil, err
	}
	return s, r.Deliver(ctx, s, inner)
}

// Verify checks a receipt's signature under the pinned key, its user id,
// its kind (any of kinds) and its binding to the request.
func (r *Realm) Verify(sr *protocol.SignedRealmReceipt, requestHash, clientNonce []byte, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	rc, err := sr.Verify(r.Identity.SigningKey)
	if err != nil {
		return nil, err
	}
	if string(rc.UserID) != string(r.UserID) {
		return nil, fmt.Errorf("realmtest: receipt for another user")
	}
	if string(rc.RequestHash) != string(requestHash) || string(rc.ClientNonce) != string(clientNonce) {
		return nil, fmt.Errorf("realmtest: receipt not bound to this request")
	}
	for _, k := range kinds {
		if rc.Kind == k {
			return rc, nil
		}
	}
	return nil, fmt.Errorf("realmtest: receipt of kind %d, want %v", rc.Kind, kinds)
}

func (r *Realm) verifySent(sr *protocol.SignedRealmReceipt, s *Sent, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	return r.Verify(sr, s.Secret.RequestHash, s.ClientNonce, kinds...)
}

// Probe asks for the record's state.
func (r *Realm) Probe(ctx context.Context) (*protocol.RealmReceipt, error) {
	var reply protocol.RealmReceiptReply
	s, err := r.Call(ctx, protocol.TypeRealmProbe, &protocol.RealmProbe{}, &reply)
	if err != nil {
		return nil, err
	}
	return r.verifySent(&reply.Receipt, s, protocol.RealmReceiptProbe)
}

// Ticket is a realm's ticket: its handle and nonce, and the receipt that
// came with it. A locked reply has no handle.
type Ticket struct {
	Receipt *protocol.RealmReceipt
	Signed  protocol.SignedRealmReceipt
	Handle  []byte
	Nonce   []byte
}

// Challenge asks for a ticket that counts nothing.
func (r *Realm) Challenge(ctx context.Context, purpose protocol.ChallengePurpose, versionID []byte) (*Ticket, error) {
	var reply protocol.RealmChallengeReply
	s, err := r.Call(ctx, protocol.TypeRealmChallenge, &protocol.RealmChallenge{Purpose: purpose, VersionID: versionID}, &reply)
	if err != nil {
		return nil, err
	}
	rc, err := r.verifySent(&reply.Receipt, s, protocol.RealmReceiptChallenge, protocol.RealmReceiptLocked)
	if err != nil {
		return nil, err
	}
	if (rc.Kind == protocol.RealmReceiptLocked) != (len(reply.Handle) == 0) {
		return nil, fmt.Errorf("realmtest: a ticket with a locked receipt, or none with a challenge receipt")
	}
	return &Ticket{Receipt: rc, Signed: reply.Receipt, Handle: reply.Handle, Nonce: reply.TicketNonce}, nil
}

// Evaluation is a realm's answer to an evaluation.
type Evaluation struct {
	Ticket
	Evaluated, Proof []byte
}

// Evaluate asks for one counted evaluation of blinded under versionID. A
// locked reply has only its receipt. The evaluation hash is checked against
// what arrived, with manifestHash and index when given (index > 0).
func (r *Realm) Evaluate(ctx context.Context, versionID, blinded, manifestHash []byte, index int) (*Evaluation, error) {
	var reply protocol.RealmEvaluateReply
	s, err := r.Call(ctx, protocol.TypeRealmEvaluate, &protocol.RealmEvaluate{VersionID: versionID, Blinded: blinded}, &reply)
	if err != nil {
		return nil, err
	}
	rc, err := r.verifySent(&reply.Receipt, s, protocol.RealmReceiptAttempt, protocol.RealmReceiptLocked)
	if err != nil {
		return nil, err
	}
	e := &Evaluation{Ticket: Ticket{Receipt: rc, Signed: reply.Receipt, Handle: reply.Handle, Nonce: reply.TicketNonce},
		Evaluated: reply.Evaluated, Proof: reply.Proof}
	if rc.Kind == protocol.RealmReceiptLocked {
		if len(reply.Handle) != 0 {
			return nil, fmt.Errorf("realmtest: a locked receipt with an evaluation")
		}
		return e, nil
	}
	if index > 0 {
		want := protocol.EvaluationHash(manifestHash, uint(index), blinded, reply.Evaluated, reply.Proof, reply.Handle)
		if string(want) != string(rc.EvaluationHash) {
			return nil, fmt.Errorf("realmtest: evaluation hash does not match what arrived")
		}
	}
	return e, nil
}

// Register registers material openly with a register ticket's handle.
func (r *Realm) Register(ctx context.Context, handle []byte, material protocol.VersionMaterial) (*protocol.RealmReceipt, error) {
	var reply protocol.RealmReceiptReply
	s, err := r.Call(ctx, protocol.TypeRealmRegister, &protocol.RealmRegister{Handle: handle, Material: material}, &reply)
	if err != nil {
		return nil, err
	}
	return r.verifySent(&reply.Receipt, s, protocol.RealmReceiptRegistered)
}

// RegisterOpen is open registration: a purpose-2 challenge, then the
// register.
func (r *Realm) RegisterOpen(ctx context.Context, material protocol.VersionMaterial, versionID []byte) (*protocol.RealmReceipt, error) {
	t, err := r.Challenge(ctx, protocol.PurposeRegister, versionID)
	if err != nil {
		return nil, err
	}
	return r.Register(ctx, t.Handle, material)
}

// Unlock sends the tag for a ticket with unlockKey and opens the session.
func (r *Realm) Unlock(ctx context.Context, t *Ticket, unlockKey []byte) (*Session, error) {
	return r.UnlockWithTag(ctx, t, unlockKey, realmkey.Tag(unlockKey, t.Handle, t.Nonce))
}

// UnlockWithTag sends tag (a test may send a wrong one) for a ticket; the
// session's keys come from unlockKey.
func (r *Realm) UnlockWithTag(ctx context.Context, t *Ticket, unlockKey, tag []byte) (*Session, error) {
	s, err := r.Seal(protocol.TypeRealmUnlock, &protocol.RealmUnlock{Handle: t.Handle, Tag: tag})
	if err != nil {
		return nil, err
	}
	return r.DeliverUnlock(ctx, s, t, unlockKey)
}

// DeliverUnlock sends a sealed unlock (again, for a replay) and opens the
// session it answers.
func (r *Realm) DeliverUnlock(ctx context.Context, s *Sent, t *Ticket, unlockKey []byte) (*Session, error) {
	var reply protocol.RealmReceiptReply
	if err := r.Deliver(ctx, s, &reply); err != nil {
		return nil, err
	}
	rc, err := r.verifySent(&reply.Receipt, s, protocol.RealmReceiptUnlocked)
	if err != nil {
		return nil, err
	}
	secret, err := realmkey.SessionSecret(unlockKey, s.Secret.SessionExport(), t.Nonce)
	if err != nil {
		return nil, err
	}
	keys, err := protocol.DeriveSessionKeys(secret, t.Handle)
	if err != nil {
		return nil, err
	}
	return &Session{realm: r, Handle: t.Handle, Keys: keys, Next: 1, Unlocked: reply.Receipt, Receipt: rc}, nil
}
