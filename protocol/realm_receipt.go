package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Context strings of realm signatures and hashes (REALMS.md, 6.3).
const (
	contextRealmReceipt    = "coffer/v1 realm receipt\x00"
	contextRealmConfirm    = "coffer/v1 realm confirm\x00"
	contextRealmEvaluation = "coffer/v1 realm evaluation\x00"
	contextRealmCommand    = "coffer/v1 realm command\x00"
	contextRealmRequest    = "coffer/v1 realm request\x00"
)

// RealmReceiptKind says what a realm receipt attests.
type RealmReceiptKind uint

const (
	RealmReceiptRegistered RealmReceiptKind = 1 // a version was stored pending
	RealmReceiptAttempt    RealmReceiptKind = 2 // an evaluation was durably counted before it was made
	RealmReceiptLocked     RealmReceiptKind = 3 // the record is a tombstone; nothing was counted
	RealmReceiptUnlocked   RealmReceiptKind = 4 // a tag was right: a session is open, not yet a success
	RealmReceiptCommitted  RealmReceiptKind = 5 // a version was committed, every other erased
	RealmReceiptDeleted    RealmReceiptKind = 6 // the record was erased at the user's request
	RealmReceiptProbe      RealmReceiptKind = 7 // the record's state, nothing changed
	RealmReceiptChallenge  RealmReceiptKind = 8 // a ticket that counts nothing was issued
	RealmReceiptStatus     RealmReceiptKind = 9 // a session's status or close
)

// RealmState is a realm record's state in a receipt.
type RealmState uint

const (
	RealmNoRecord RealmState = 0
	RealmLive     RealmState = 1
	RealmLocked   RealmState = 2 // a tombstone: shares and unlock keys erased
)

// VersionStatus is a held version's status.
type VersionStatus uint

const (
	VersionEmpty     VersionStatus = 0
	VersionPending   VersionStatus = 1
	VersionCommitted VersionStatus = 2
)

// VersionOrigin says how a version came to a realm (REALMS.md, 6.3).
type VersionOrigin uint

const (
	OriginEmpty        VersionOrigin = 0 // an empty slot
	OriginSession      VersionOrigin = 1 // put in a session
	OriginOpen         VersionOrigin = 2 // open registration on no record
	OriginOverBurned   VersionOrigin = 3 // open registration over a tombstone, or put on such a version
	maxVersionOrigin                 = OriginOverBurned
	RealmVersionsSlots               = 2 // a realm holds at most two versions of a user
)

// VersionState is one slot of a realm record as a receipt reports it.
type VersionState struct {
	VersionID    []byte        `cbor:"1,keyasint"`
	Status       VersionStatus `cbor:"2,keyasint"`
	Index        uint          `cbor:"3,keyasint"`
	ManifestHash []byte        `cbor:"4,keyasint"`
	Origin       VersionOrigin `cbor:"5,keyasint"`
}

// EmptyVersionState is an empty slot: every field present, zeroed.
func EmptyVersionState() VersionState {
	return VersionState{VersionID: make([]byte, VersionIDSize), ManifestHash: make([]byte, HashSize)}
}

func (v *VersionState) validate() error {
	if v.Status > VersionCommitted || v.Origin > maxVersionOrigin || v.Index > MaxRealms {
		return fmt.Errorf("%w: version state %d/%d/%d", ErrMalformed, v.Status, v.Origin, v.Index)
	}
	if (v.Status == VersionEmpty) != (v.Origin == OriginEmpty) || (v.Status == VersionEmpty) != (v.Index == 0) {
		return fmt.Errorf("%w: half-empty version slot", ErrMalformed)
	}
	return firstErr(checkLen("version id", v.VersionID, VersionIDSize), checkLen("manifest hash", v.ManifestHash, HashSize))
}

// RealmReceipt is what a realm attests about a user's record (REALMS.md,
// 6.3). Every field is always present and fixed-width where it can be, and
// the body is padded to RealmReceiptBodySize, so that its size says nothing
// about the record.
type RealmReceipt struct {
	Kind               RealmReceiptKind `cbor:"1,keyasint"`
	UserID             []byte           `cbor:"2,keyasint"`
	State              RealmState       `cbor:"3,keyasint"`
	VersionID          []byte           `cbor:"4,keyasint"`
	Limit              uint             `cbor:"5,keyasint"`
	TriesLeft          uint             `cbor:"6,keyasint"`
	FailedSinceSuccess uint             `cbor:"7,keyasint"`
	StoreSequence      Total            `cbor:"8,keyasint"`
	RequestHash        []byte           `cbor:"9,keyasint"`
	ClientNonce        []byte           `cbor:"10,keyasint"`
	AttemptsTotal      Total            `cbor:"11,keyasint"`
	SuccessesTotal     Total            `cbor:"12,keyasint"`
	RevivableMillis    Total            `cbor:"13,keyasint"`
	Versions           []VersionState   `cbor:"14,keyasint"`
	EvaluationHash     []byte           `cbor:"15,keyasint"`
	Padding            []byte           `cbor:"16,keyasint"`
}

// RealmReceiptBodySize is the length of every encoded realm receipt.
const RealmReceiptBodySize = 512

func (r *RealmReceipt) validate() error {
	if r.Kind < RealmReceiptRegistered || r.Kind > RealmReceiptStatus {
		return fmt.Errorf("%w: realm receipt kind %d", ErrMalformed, r.Kind)
	}
	if r.State > RealmLocked {
		return fmt.Errorf("%w: realm record state %d", ErrMalformed, r.State)
	}
	if r.Limit > MaxLimitCeiling || r.TriesLeft > r.Limit {
		return fmt.Errorf("%w: realm receipt has %d tries left of %d", ErrMalformed, r.TriesLeft, r.Limit)
	}
	if r.RevivableMillis != 0 && r.Kind != RealmReceiptLocked {
		return fmt.Errorf("%w: only a locked receipt can be revivable", ErrMalformed)
	}
	if len(r.Versions) != RealmVersionsSlots {
		return fmt.Errorf("%w: realm receipt with %d version slots", ErrMalformed, len(r.Versions))
	}
	for i := range r.Versions {
		if err := r.Versions[i].validate(); err != nil {
			return err
		}
	}
	for _, p := range r.Padding {
		if p != 0 {
			return fmt.Errorf("%w: receipt padding is not zero", ErrMalformed)
		}
	}
	return firstErr(checkUserID(r.UserID), checkLen("version id", r.VersionID, VersionIDSize),
		checkLen("request hash", r.RequestHash, HashSize), checkLen("client nonce", r.ClientNonce, ClientNonceSize),
		checkLen("evaluation hash", r.EvaluationHash, HashSize))
}

// Held returns the slot holding versionID, or nil.
func (r *RealmReceipt) Held(versionID []byte) *VersionState {
	for i := range r.Versions {
		v := &r.Versions[i]
		if v.Status != VersionEmpty && string(v.VersionID) == string(versionID) {
			return v
		}
	}
	return nil
}

// marshalPadded encodes r padded to exactly RealmReceiptBodySize bytes; the
// padding is always 24..255 bytes, so its header is two bytes.
func (r *RealmReceipt) marshalPadded() ([]byte, error) {
	p := *r
	return marshalPaddedTo("realm receipt", RealmReceiptBodySize, &p, &p.Padding)
}

// SignedRealmReceipt is an encoded RealmReceipt and the realm's Ed25519
// signature over "coffer/v1 realm receipt" ‖ 0x00 ‖ body.
type SignedRealmReceipt struct {
	Body      []byte `cbor:"1,keyasint"`
	Signature []byte `cbor:"2,keyasint"`
}

func (s *SignedRealmReceipt) validate() error {
	return firstErr(checkLen("realm receipt", s.Body, RealmReceiptBodySize), checkLen("signature", s.Signature, SignatureSize))
}

// SignRealmReceipt encodes and signs r.
func SignRealmReceipt(key ed25519.PrivateKey, r *RealmReceipt) (SignedRealmReceipt, error) {
	body, err := r.marshalPadded()
	if err != nil {
		return SignedRealmReceipt{}, err
	}
	return SignedRealmReceipt{Body: body, Signature: ed25519.Sign(key, withContext(contextRealmReceipt, body))}, nil
}

// Verify checks the signature against the realm's pinned signing key and
// decodes the receipt.
func (s *SignedRealmReceipt) Verify(realmKey ed25519.PublicKey) (*RealmReceipt, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if len(realmKey) != ed25519.PublicKeySize || !ed25519.Verify(realmKey, withContext(contextRealmReceipt, s.Body), s.Signature) {
		return nil, fmt.Errorf("%w: realm receipt", ErrBadSignature)
	}
	var r RealmReceipt
	if err := Unmarshal(s.Body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RealmReceiptHash names a signed realm receipt in a confirmation (N5).
func RealmReceiptHash(s *SignedRealmReceipt) []byte {
	h := sha256.New()
	h.Write([]byte(contextRealmConfirm))
	h.Write(s.Body)
	return h.Sum(nil)
}

// EvaluationHash binds an attempt receipt to the version, the realm's
// index, the blinded element, the evaluation, its proof and the ticket
// (REALMS.md, 6.3), so that a lying realm's evidence is checkable by anyone.
func EvaluationHash(manifestHash []byte, index uint, blinded, evaluated, proof, handle []byte) []byte {
	h := sha256.New()
	h.Write([]byte(contextRealmEvaluation))
	h.Write(manifestHash)
	h.Write([]byte{byte(index)})
	h.Write(blinded)
	h.Write(evaluated)
	h.Write(proof)
	h.Write(handle)
	return h.Sum(nil)
}

// RealmRequestHash names a sealed realm request as sent:
// SHA-256("coffer/v1 realm request" ‖ 0x00 ‖ u8(type) ‖ encoded RealmRequest).
func RealmRequestHash(t Type, encodedRequest []byte) []byte {
	h := sha256.New()
	h.Write([]byte(contextRealmRequest))
	h.Write([]byte{byte(t)})
	h.Write(encodedRequest)
	return h.Sum(nil)
}

// RealmCommandHash names a session command as sent:
// SHA-256("coffer/v1 realm command" ‖ 0x00 ‖ handle ‖ u64(seq) ‖ sealed).
func RealmCommandHash(handle []byte, seq uint64, sealed []byte) []byte {
	h := sha256.New()
	h.Write([]byte(contextRealmCommand))
	h.Write(handle)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	h.Write(s[:])
	h.Write(sealed)
	return h.Sum(nil)
}
