package protocol

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Realm messages (REALMS.md, sections 6 and 7). A realm is a vault serving
// one share of a user's key; a client talks to t of n of them. Every request
// of types 16-20 is a RealmRequest HPKE-sealed to the realm, every reply a
// RealmReply sealed back to the request's context; type 21 has the shape of
// Session and SessionReply, under keys an unlock opened.

// Sizes of the realm messages.
const (
	VersionIDSize   = 16 // names one registration (version) of a realm set
	SetIDSize       = 16 // names a user across the realms of a set, chosen by the client
	ClientNonceSize = 32 // binds a receipt to the request that carried it
	TicketNonceSize = 32 // a realm's per-attempt nonce, covered by the unlock tag
	RealmTagSize    = 32 // HMAC-SHA256
	ScalarSize      = 32 // ristretto255 scalar (a key share)
	UnlockKeySize   = 32
	ProofSize       = 64 // RFC 9497 DLEQ proof, c ‖ s
	MinRealms       = 2
	MaxRealms       = 8
	// MaxManifestSize bounds an encoded Manifest (REALMS.md, 5.2).
	MaxManifestSize = 2048
	// MaxRealmSealedSize bounds a sealed realm request or reply: a
	// realm-register carries a manifest of up to MaxManifestSize.
	MaxRealmSealedSize = 4096
)

// RealmRequest is every realm request of types 16-20 (REALMS.md, 6.1):
// Sealed is HPKE.Seal(info "coffer/v1 realm request", aad = u8(type) ‖
// user_id, RealmInner) to the realm's pinned HPKE key. UserID is the user's
// account id at this realm's host, repeated in clear for routing.
type RealmRequest struct {
	UserID []byte `cbor:"1,keyasint"`
	Enc    []byte `cbor:"2,keyasint"`
	Sealed []byte `cbor:"3,keyasint"`
}

func (m *RealmRequest) validate() error {
	return firstErr(checkUserID(m.UserID), checkLen("enc", m.Enc, PublicKeySize),
		checkRange("sealed", m.Sealed, 16, MaxRealmSealedSize))
}

// RealmInner is what a RealmRequest seals. Body is the encoded body of the
// request's type.
type RealmInner struct {
	UserID      []byte          `cbor:"1,keyasint"`
	ClientNonce []byte          `cbor:"2,keyasint"`
	Body        cbor.RawMessage `cbor:"3,keyasint"`
}

func (m *RealmInner) validate() error {
	if len(m.Body) == 0 {
		return fmt.Errorf("%w: realm request has no body", ErrMalformed)
	}
	return firstErr(checkUserID(m.UserID), checkLen("client nonce", m.ClientNonce, ClientNonceSize))
}

// RealmReply answers types 16-20: Sealed is RealmReplyInner's plaintext
// sealed under keys derived from the request's HPKE context and
// ResponseNonce, which the realm draws afresh for every reply (6.2).
type RealmReply struct {
	Sealed        []byte `cbor:"1,keyasint"`
	ResponseNonce []byte `cbor:"2,keyasint"`
}

func (m *RealmReply) validate() error {
	return firstErr(checkRange("sealed", m.Sealed, 16, MaxRealmSealedSize),
		checkLen("response nonce", m.ResponseNonce, ResponseNonceSize))
}

// RealmProbe is the body of a realm-probe: nothing but the envelope's nonce.
type RealmProbe = Empty

// ChallengePurpose says what a challenge ticket may be used for.
type ChallengePurpose uint

const (
	PurposeSession  ChallengePurpose = 1 // a realm-unlock: open a session without counting
	PurposeRegister ChallengePurpose = 2 // a realm-register: open registration
)

// RealmChallenge asks for a ticket that is not an evaluation. VersionID
// names the version the session is for (purpose 1) or the version about to
// be registered (purpose 2, for the receipt only).
type RealmChallenge struct {
	Purpose   ChallengePurpose `cbor:"1,keyasint"`
	VersionID []byte           `cbor:"2,keyasint"`
}

func (m *RealmChallenge) validate() error {
	if m.Purpose != PurposeSession && m.Purpose != PurposeRegister {
		return fmt.Errorf("%w: challenge purpose %d", ErrMalformed, m.Purpose)
	}
	return checkLen("version id", m.VersionID, VersionIDSize)
}

// RealmEvaluate asks for one counted evaluation of the blinded password
// under the realm's share of VersionID.
type RealmEvaluate struct {
	VersionID []byte `cbor:"1,keyasint"`
	Blinded   []byte `cbor:"2,keyasint"`
}

func (m *RealmEvaluate) validate() error {
	return firstErr(checkLen("version id", m.VersionID, VersionIDSize), checkLen("blinded element", m.Blinded, ElementSize))
}

// RealmUnlock proves the version's unlock key over a ticket's nonce.
type RealmUnlock struct {
	Handle []byte `cbor:"1,keyasint"`
	Tag    []byte `cbor:"2,keyasint"`
}

func (m *RealmUnlock) validate() error {
	return firstErr(checkLen("handle", m.Handle, HandleSize), checkLen("tag", m.Tag, RealmTagSize))
}

// VersionMaterial is one realm's part of a version: the public manifest,
// the realm's index in it, its key share and its unlock key.
type VersionMaterial struct {
	Manifest  []byte `cbor:"1,keyasint"`
	Index     uint   `cbor:"2,keyasint"`
	Share     []byte `cbor:"3,keyasint"`
	UnlockKey []byte `cbor:"4,keyasint"`
}

func (m *VersionMaterial) validate() error {
	if m.Index < 1 || m.Index > MaxRealms {
		return fmt.Errorf("%w: realm index %d", ErrMalformed, m.Index)
	}
	return firstErr(checkRange("manifest", m.Manifest, 1, MaxManifestSize), checkLen("share", m.Share, ScalarSize),
		checkLen("unlock key", m.UnlockKey, UnlockKeySize))
}

// Wipe overwrites the secret parts.
func (m *VersionMaterial) Wipe() { clear(m.Share); clear(m.UnlockKey) }

// RealmRegister is open registration with a purpose-2 challenge ticket.
type RealmRegister struct {
	Handle   []byte          `cbor:"1,keyasint"`
	Material VersionMaterial `cbor:"2,keyasint"`
}

func (m *RealmRegister) validate() error {
	return firstErr(checkLen("handle", m.Handle, HandleSize), m.Material.validate())
}

// RealmReceiptReply is the reply inner of realm-probe, realm-unlock,
// realm-register and every session command: one signed receipt.
type RealmReceiptReply struct {
	Receipt SignedRealmReceipt `cbor:"1,keyasint"`
}

func (m *RealmReceiptReply) validate() error { return m.Receipt.validate() }

// RealmChallengeReply carries a ticket that counts nothing, or a locked
// receipt and no ticket.
type RealmChallengeReply struct {
	Receipt     SignedRealmReceipt `cbor:"1,keyasint"`
	Handle      []byte             `cbor:"2,keyasint,omitempty"`
	TicketNonce []byte             `cbor:"3,keyasint,omitempty"`
}

func (m *RealmChallengeReply) validate() error {
	if len(m.Handle) == 0 && len(m.TicketNonce) == 0 {
		return m.Receipt.validate()
	}
	return firstErr(m.Receipt.validate(), checkLen("handle", m.Handle, HandleSize),
		checkLen("ticket nonce", m.TicketNonce, TicketNonceSize))
}

// RealmEvaluateReply carries a counted evaluation, its proof and its ticket;
// or, when the record is locked, only the locked receipt.
type RealmEvaluateReply struct {
	Receipt     SignedRealmReceipt `cbor:"1,keyasint"`
	Handle      []byte             `cbor:"2,keyasint,omitempty"`
	TicketNonce []byte             `cbor:"3,keyasint,omitempty"`
	Evaluated   []byte             `cbor:"4,keyasint,omitempty"`
	Proof       []byte             `cbor:"5,keyasint,omitempty"`
}

func (m *RealmEvaluateReply) validate() error {
	if len(m.Handle) == 0 && len(m.TicketNonce) == 0 && len(m.Evaluated) == 0 && len(m.Proof) == 0 {
		return m.Receipt.validate()
	}
	return firstErr(m.Receipt.validate(), checkLen("handle", m.Handle, HandleSize),
		checkLen("ticket nonce", m.TicketNonce, TicketNonceSize), checkLen("evaluated element", m.Evaluated, ElementSize),
		checkLen("proof", m.Proof, ProofSize))
}

// RealmCommandCode names a command in a realm session.
type RealmCommandCode uint

const (
	RealmClose      RealmCommandCode = 1 // → status receipt; the session ends
	RealmStatus     RealmCommandCode = 2 // → status receipt
	RealmPutVersion RealmCommandCode = 3 // {material} → registered receipt (rule V3)
	RealmCommit     RealmCommandCode = 4 // {version_id} → committed receipt (rule V4)
	RealmDelete     RealmCommandCode = 5 // → deleted receipt; the session ends (rule V5)
)

// RealmCommand is sealed in a realm session (type 21) under the session's
// to-vault key. The session's first command must carry Confirm, the
// RealmReceiptHash of the unlocked receipt (rule N5).
type RealmCommand struct {
	Command     RealmCommandCode `cbor:"1,keyasint"`
	ClientNonce []byte           `cbor:"2,keyasint"`
	Confirm     []byte           `cbor:"3,keyasint,omitempty"`
	Material    *VersionMaterial `cbor:"4,keyasint,omitempty"`
	VersionID   []byte           `cbor:"5,keyasint,omitempty"`
}

func (m *RealmCommand) validate() error {
	if err := checkLen("client nonce", m.ClientNonce, ClientNonceSize); err != nil {
		return err
	}
	if len(m.Confirm) != 0 {
		if err := checkLen("confirmation", m.Confirm, HashSize); err != nil {
			return err
		}
	}
	switch m.Command {
	case RealmClose, RealmStatus, RealmDelete:
		if m.Material != nil || len(m.VersionID) != 0 {
			return fmt.Errorf("%w: realm command %d carries a version", ErrMalformed, m.Command)
		}
	case RealmPutVersion:
		if m.Material == nil || len(m.VersionID) != 0 {
			return fmt.Errorf("%w: put-version needs its material and nothing else", ErrMalformed)
		}
		return m.Material.validate()
	case RealmCommit:
		if m.Material != nil {
			return fmt.Errorf("%w: commit carries material", ErrMalformed)
		}
		return checkLen("version id", m.VersionID, VersionIDSize)
	default:
		return fmt.Errorf("%w: realm command %d", ErrMalformed, m.Command)
	}
	return nil
}
