package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Context strings prefixed to what is signed, so that a signature made for
// one purpose can never be replayed as another.
const (
	contextReceipt  = "coffer/v1 receipt\x00"
	contextIdentity = "coffer/v1 identity\x00"
	contextStatus   = "coffer/v1 status\x00"
	contextRecord   = "coffer/v1 record\x00"
	// contextReceiptHash names a receipt in a login confirmation.
	contextReceiptHash = "coffer/v1 confirm\x00"
)

// ErrBadSignature is returned when a signed structure does not verify.
var ErrBadSignature = errors.New("protocol: signature does not verify")

// ReceiptKind says what a receipt attests.
type ReceiptKind uint

const (
	ReceiptRegistered ReceiptKind = 1 // a record was created; RecordHash names it
	ReceiptAttempt    ReceiptKind = 2 // a login attempt was durably counted before KE2
	ReceiptLocked     ReceiptKind = 3 // the record is locked: its key was erased, nothing was counted
	ReceiptReleased   ReceiptKind = 4 // the password was right: counter reset, key released
	ReceiptChanged    ReceiptKind = 5 // the password was changed; RecordHash names the new record
	ReceiptDeleted    ReceiptKind = 6 // the record was erased at the user's request
)

// Receipt is what the vault attests to the client about its record. The
// client verifies it with the signing key from the identity bundle it
// pinned, never with a key that merely came through the host.
//
// Every receipt body is padded to ReceiptBodySize bytes, and the running
// totals are fixed-width, so that the size of a reply says nothing about
// the record behind it (a real one, a locked one, or none).
type Receipt struct {
	Kind               ReceiptKind `cbor:"1,keyasint"`
	UserID             []byte      `cbor:"2,keyasint"`
	Generation         uint64      `cbor:"3,keyasint"` // identifies one registration of this user
	Limit              uint        `cbor:"4,keyasint"`
	TriesLeft          uint        `cbor:"5,keyasint"`
	FailedSinceSuccess uint        `cbor:"6,keyasint"` // failed attempts before this one since the last confirmed success
	StoreSequence      uint64      `cbor:"7,keyasint"` // the durable commit this receipt follows
	RecordHash         []byte      `cbor:"8,keyasint,omitempty"`
	RequestHash        []byte      `cbor:"9,keyasint,omitempty"` // SHA-256 of the client's KE1, binding the receipt to this login
	// AttemptsTotal counts every attempt ever counted on this registration
	// (this one included), SuccessesTotal every login its client confirmed.
	// Both only grow; a client that remembers them tells its own attempts
	// from everybody else's.
	AttemptsTotal  Total `cbor:"10,keyasint"`
	SuccessesTotal Total `cbor:"11,keyasint"`
	// RevivableMillis, in a locked receipt, is how long the login whose
	// guess reached the limit may still finish (and, with the right
	// password, bring the record back); 0 means the key is gone for ever.
	RevivableMillis Total  `cbor:"12,keyasint"`
	Padding         []byte `cbor:"15,keyasint"`
}

// ReceiptBodySize is the length of every encoded receipt.
const ReceiptBodySize = 300

// Total is a count encoded fixed-width (bstr[8], big-endian), so that its
// value does not change the size of what carries it.
type Total uint64

func (t Total) MarshalCBOR() ([]byte, error) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t))
	return encMode.Marshal(b[:])
}

func (t *Total) UnmarshalCBOR(data []byte) error {
	var b []byte
	if err := decMode.Unmarshal(data, &b); err != nil {
		return err
	}
	if len(b) != 8 {
		return fmt.Errorf("%w: a total is %d bytes, want 8", ErrMalformed, len(b))
	}
	*t = Total(binary.BigEndian.Uint64(b))
	return nil
}

func (r *Receipt) validate() error {
	if r.Kind < ReceiptRegistered || r.Kind > ReceiptDeleted {
		return fmt.Errorf("%w: receipt kind %d", ErrMalformed, r.Kind)
	}
	if r.TriesLeft > r.Limit {
		return fmt.Errorf("%w: receipt has %d tries left of %d", ErrMalformed, r.TriesLeft, r.Limit)
	}
	if r.RevivableMillis != 0 && r.Kind != ReceiptLocked {
		return fmt.Errorf("%w: only a locked receipt can be revivable", ErrMalformed)
	}
	if len(r.RecordHash) != 0 {
		if err := checkLen("record hash", r.RecordHash, HashSize); err != nil {
			return err
		}
	}
	if len(r.RequestHash) != 0 {
		if err := checkLen("request hash", r.RequestHash, HashSize); err != nil {
			return err
		}
	}
	for _, p := range r.Padding {
		if p != 0 {
			return fmt.Errorf("%w: receipt padding is not zero", ErrMalformed)
		}
	}
	return firstErr(checkUserID(r.UserID), checkLimit(r.Limit))
}

// marshalPadded encodes r with as much zero padding as makes the body
// exactly ReceiptBodySize bytes. Every receipt needs between 24 and 255
// bytes of padding (ReceiptBodySize is chosen so), so the padding's own CBOR
// header is always two bytes: one more than the empty string's.
func (r *Receipt) marshalPadded() ([]byte, error) {
	p := *r
	return marshalPaddedTo("receipt", ReceiptBodySize, &p, &p.Padding)
}

// SignedReceipt is an encoded Receipt and the vault's Ed25519 signature.
type SignedReceipt struct {
	Body      []byte `cbor:"1,keyasint"`
	Signature []byte `cbor:"2,keyasint"`
}

func (s *SignedReceipt) validate() error {
	return firstErr(checkLen("receipt", s.Body, ReceiptBodySize), checkLen("signature", s.Signature, SignatureSize))
}

// SignReceipt encodes and signs r.
func SignReceipt(key ed25519.PrivateKey, r *Receipt) (SignedReceipt, error) {
	body, err := r.marshalPadded()
	if err != nil {
		return SignedReceipt{}, err
	}
	return SignedReceipt{Body: body, Signature: ed25519.Sign(key, withContext(contextReceipt, body))}, nil
}

// Verify checks the signature against the vault's signing key and decodes
// the receipt.
func (s *SignedReceipt) Verify(vaultKey ed25519.PublicKey) (*Receipt, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if len(vaultKey) != ed25519.PublicKeySize || !ed25519.Verify(vaultKey, withContext(contextReceipt, s.Body), s.Signature) {
		return nil, fmt.Errorf("%w: receipt", ErrBadSignature)
	}
	var r Receipt
	if err := Unmarshal(s.Body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RecordHash names a registration in receipts: SHA-256 over the context, the
// OPAQUE record, the wrapped key and the limit, exactly as the client sent
// them.
func RecordHash(record, wrappedKey []byte, limit uint) []byte {
	h := sha256.New()
	h.Write([]byte(contextRecord))
	h.Write(record)
	h.Write([]byte{byte(len(wrappedKey))})
	h.Write(wrappedKey)
	h.Write([]byte{byte(limit >> 8), byte(limit)})
	return h.Sum(nil)
}

// ReceiptHash names a signed receipt: the client's confirmation of a login
// carries the hash of the release receipt it received.
func ReceiptHash(s *SignedReceipt) []byte {
	h := sha256.New()
	h.Write([]byte(contextReceiptHash))
	h.Write(s.Body)
	return h.Sum(nil)
}

// RequestHash binds a login receipt to the KE1 that started the login.
func RequestHash(ke1 []byte) []byte {
	sum := sha256.Sum256(ke1)
	return sum[:]
}

// Identity is a vault's identity bundle: its public keys and what a client
// needs to decide whether to trust it.
type Identity struct {
	Version      uint   `cbor:"1,keyasint"`
	SigningKey   []byte `cbor:"2,keyasint"` // Ed25519: receipts and status
	AKEKey       []byte `cbor:"3,keyasint"` // ristretto255: the OPAQUE server public key
	HPKEKey      []byte `cbor:"4,keyasint"` // X25519: the registration channel
	FirmwareHash []byte `cbor:"5,keyasint"` // the firmware measurement provisioned (Status.FirmwareHash says what runs)
	MaxLimit     uint   `cbor:"6,keyasint"` // the highest attempt limit this vault accepts
	Insecure     bool   `cbor:"7,keyasint"` // software vault or emulator: keys are not hardware-protected
	Name         string `cbor:"8,keyasint"`
}

func (id *Identity) validate() error {
	if id.Version != Version {
		return fmt.Errorf("%w: identity version %d", ErrMalformed, id.Version)
	}
	if len(id.Name) > 64 {
		return fmt.Errorf("%w: identity name of %d bytes", ErrMalformed, len(id.Name))
	}
	return firstErr(checkLen("signing key", id.SigningKey, PublicKeySize), checkLen("ake key", id.AKEKey, PublicKeySize),
		checkLen("hpke key", id.HPKEKey, PublicKeySize), checkLen("firmware hash", id.FirmwareHash, HashSize),
		checkLimit(id.MaxLimit))
}

// SignedIdentity is an encoded Identity signed by the offline provisioning
// key that clients pin.
type SignedIdentity struct {
	Body      []byte `cbor:"1,keyasint"`
	Signature []byte `cbor:"2,keyasint"`
}

func (s *SignedIdentity) validate() error {
	return firstErr(checkRange("identity", s.Body, 1, 512), checkLen("signature", s.Signature, SignatureSize))
}

// SignIdentity is what the provisioning tool does, offline.
func SignIdentity(provisioningKey ed25519.PrivateKey, id *Identity) (SignedIdentity, error) {
	body, err := Marshal(id)
	if err != nil {
		return SignedIdentity{}, err
	}
	return SignedIdentity{Body: body, Signature: ed25519.Sign(provisioningKey, withContext(contextIdentity, body))}, nil
}

// Verify checks the bundle against the pinned provisioning key and decodes it.
func (s *SignedIdentity) Verify(provisioningKey ed25519.PublicKey) (*Identity, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if len(provisioningKey) != ed25519.PublicKeySize || !ed25519.Verify(provisioningKey, withContext(contextIdentity, s.Body), s.Signature) {
		return nil, fmt.Errorf("%w: identity bundle", ErrBadSignature)
	}
	var id Identity
	if err := Unmarshal(s.Body, &id); err != nil {
		return nil, err
	}
	return &id, nil
}

// SignStatus encodes and signs a vault status.
func SignStatus(key ed25519.PrivateKey, st *Status) (StatusReply, error) {
	body, err := Marshal(st)
	if err != nil {
		return StatusReply{}, err
	}
	return StatusReply{Body: body, Signature: ed25519.Sign(key, withContext(contextStatus, body))}, nil
}

// ErrReplayedStatus is returned when a correctly signed status does not
// echo the nonce of the request it is offered as the answer to: it was
// replayed, or answers another request.
var ErrReplayedStatus = errors.New("protocol: the status answers another request (replayed)")

// Verify checks a status against the vault's signing key, decodes it, and
// checks that it answers the request that carried nonce.
func (s *StatusReply) Verify(vaultKey ed25519.PublicKey, nonce []byte) (*Status, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if len(vaultKey) != ed25519.PublicKeySize || !ed25519.Verify(vaultKey, withContext(contextStatus, s.Body), s.Signature) {
		return nil, fmt.Errorf("%w: status", ErrBadSignature)
	}
	var st Status
	if err := Unmarshal(s.Body, &st); err != nil {
		return nil, err
	}
	if len(nonce) != StatusNonceSize || !bytes.Equal(st.Nonce, nonce) {
		return nil, ErrReplayedStatus
	}
	return &st, nil
}

func withContext(context string, body []byte) []byte {
	return append([]byte(context), body...)
}
