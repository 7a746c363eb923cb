package protocol

import (
	"crypto/rand"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Version is the protocol version this package speaks. It appears in every
// envelope, in the identity bundle and in every context string ("coffer/v1 …").
const Version = 1

// OPAQUEContext is RFC 9807's context string for this protocol version,
// bound into every login's transcript: a client and a vault that disagree
// on it fail every login. SPEC.md, "OPAQUE", is the authority.
const OPAQUEContext = "coffer/v1"

// The client's key stretch (SPEC.md, "OPAQUE"): Argon2id on the OPRF output
// with an empty salt. The vault cannot tell which stretch a client used, but
// a client that stretched otherwise could not open its records from another
// client; these are the only parameters real records use.
const (
	Argon2idPasses    = 3
	Argon2idMemoryKiB = 64 * 1024
	Argon2idLanes     = 4
	Argon2idLength    = 32
)

// Sizes of the fixed-length fields. OPAQUE sizes are those of RFC 9807 with
// ristretto255-SHA512.
const (
	MaxUserIDSize     = 64
	ElementSize       = 32  // ristretto255 element (blinded/evaluated OPRF element, public keys)
	RecordSize        = 192 // OPAQUE registration record
	KE1Size           = 96
	KE2Size           = 320
	KE3Size           = 64
	HandleSize        = 16 // registration, login and session handles chosen by the vault
	HashSize          = 32 // SHA-256
	SignatureSize     = 64 // Ed25519
	PublicKeySize     = 32 // Ed25519, ristretto255 and X25519 public keys
	MinWrappedKeySize = 16 + 32
	MaxWrappedKeySize = 128
	MaxSealedSize     = 2048 // any AEAD ciphertext carried in a message
	MinLimit          = 1
	MaxLimitCeiling   = 100 // no vault may advertise a higher maximum attempt limit
	DefaultLimit      = 10
	StatusNonceSize   = 32 // the client's challenge in a status request
)

// Type says which message an envelope's body holds. A reply carries the type
// of the request it answers, or TypeError.
type Type uint

const (
	TypeError          Type = 0
	TypeIdentity       Type = 1
	TypeRegisterStart  Type = 2
	TypeRegisterFinish Type = 3
	TypeLoginStart     Type = 4
	TypeLoginFinish    Type = 5
	TypeSession        Type = 6
	TypeStatus         Type = 7
	// Provisioning (SPEC.md, "Provisioning"): the station reads the vault's
	// unsigned identity, signs it offline and installs the signed bundle.
	TypeUnsignedIdentity Type = 8
	TypeInstallIdentity  Type = 9
	// TypeUserStatus asks for one user's signed attempt count, counting
	// nothing (SPEC.md, "User status").
	TypeUserStatus Type = 10
	// Realms (REALMS.md, section 7): one share of a user's key, t of n.
	TypeRealmProbe     Type = 16
	TypeRealmChallenge Type = 17
	TypeRealmEvaluate  Type = 18
	TypeRealmUnlock    Type = 19
	TypeRealmRegister  Type = 20
	TypeRealmSession   Type = 21
)

// Known reports whether t is a message type of this protocol version.
func (t Type) Known() bool {
	return t <= TypeUserStatus || (t >= TypeRealmProbe && t <= TypeRealmSession)
}

func (t Type) String() string {
	switch t {
	case TypeError:
		return "error"
	case TypeIdentity:
		return "identity"
	case TypeRegisterStart:
		return "register-start"
	case TypeRegisterFinish:
		return "register-finish"
	case TypeLoginStart:
		return "login-start"
	case TypeLoginFinish:
		return "login-finish"
	case TypeSession:
		return "session"
	case TypeStatus:
		return "status"
	case TypeUnsignedIdentity:
		return "unsigned-identity"
	case TypeInstallIdentity:
		return "install-identity"
	case TypeUserStatus:
		return "user-status"
	case TypeRealmProbe:
		return "realm-probe"
	case TypeRealmChallenge:
		return "realm-challenge"
	case TypeRealmEvaluate:
		return "realm-evaluate"
	case TypeRealmUnlock:
		return "realm-unlock"
	case TypeRealmRegister:
		return "realm-register"
	case TypeRealmSession:
		return "realm-session"
	}
	return fmt.Sprintf("type(%d)", uint(t))
}

// Envelope wraps every request and reply.
type Envelope struct {
	Version uint            `cbor:"1,keyasint"`
	Type    Type            `cbor:"2,keyasint"`
	Body    cbor.RawMessage `cbor:"3,keyasint"`
}

func (e *Envelope) validate() error {
	if e.Version != Version {
		return fmt.Errorf("%w: version %d, this side speaks %d", ErrUnsupportedVersion, e.Version, Version)
	}
	if !e.Type.Known() {
		return fmt.Errorf("%w: unknown message type %d", ErrMalformed, uint(e.Type))
	}
	if len(e.Body) == 0 {
		return fmt.Errorf("%w: envelope has no body", ErrMalformed)
	}
	return nil
}

// Empty is the body of requests that carry nothing (identity,
// unsigned-identity).
type Empty struct{}

func (*Empty) validate() error { return nil }

// RegisterStart opens the HPKE registration channel. Enc and Sealed are an
// HPKE encapsulation and ciphertext to the vault's HPKE key; the plaintext is
// a RegisterStartInner. UserID is repeated in clear for routing and must equal
// the sealed one.
type RegisterStart struct {
	UserID []byte `cbor:"1,keyasint"`
	Enc    []byte `cbor:"2,keyasint"`
	Sealed []byte `cbor:"3,keyasint"`
}

func (m *RegisterStart) validate() error {
	return firstErr(checkUserID(m.UserID), checkLen("enc", m.Enc, PublicKeySize),
		checkRange("sealed", m.Sealed, 16, MaxSealedSize))
}

// RegisterStartInner is sealed inside RegisterStart.
type RegisterStartInner struct {
	UserID  []byte `cbor:"1,keyasint"`
	Blinded []byte `cbor:"2,keyasint"` // OPAQUE RegistrationRequest
}

func (m *RegisterStartInner) validate() error {
	return firstErr(checkUserID(m.UserID), checkLen("blinded", m.Blinded, ElementSize))
}

// RegisterStartReply carries the vault's handle for this registration, the
// response nonce it drew for this reply (the run's keys derive from it), and
// the RegisterStartReplyInner sealed under the run's start-reply key.
type RegisterStartReply struct {
	Handle        []byte `cbor:"1,keyasint"`
	Sealed        []byte `cbor:"2,keyasint"`
	ResponseNonce []byte `cbor:"3,keyasint"`
}

func (m *RegisterStartReply) validate() error {
	return firstErr(checkLen("handle", m.Handle, HandleSize), checkRange("sealed", m.Sealed, 16, MaxSealedSize),
		checkLen("response nonce", m.ResponseNonce, ResponseNonceSize))
}

// RegisterStartReplyInner is OPAQUE's RegistrationResponse, split.
type RegisterStartReplyInner struct {
	Evaluated       []byte `cbor:"1,keyasint"`
	ServerPublicKey []byte `cbor:"2,keyasint"`
}

func (m *RegisterStartReplyInner) validate() error {
	return firstErr(checkLen("evaluated", m.Evaluated, ElementSize), checkLen("server public key", m.ServerPublicKey, PublicKeySize))
}

// RegisterFinish completes a registration; Sealed holds a RegisterFinishInner
// sealed under the run's finish key.
type RegisterFinish struct {
	Handle []byte `cbor:"1,keyasint"`
	Sealed []byte `cbor:"2,keyasint"`
}

func (m *RegisterFinish) validate() error {
	return firstErr(checkLen("handle", m.Handle, HandleSize), checkRange("sealed", m.Sealed, 16, MaxSealedSize))
}

// RegisterFinishInner is the OPAQUE record, the backup key wrapped under the
// export key (opaque to the vault), and the attempt limit the client chose.
type RegisterFinishInner struct {
	Record     []byte `cbor:"1,keyasint"`
	WrappedKey []byte `cbor:"2,keyasint"`
	Limit      uint   `cbor:"3,keyasint"`
}

func (m *RegisterFinishInner) validate() error {
	return firstErr(checkLen("record", m.Record, RecordSize),
		checkRange("wrapped key", m.WrappedKey, MinWrappedKeySize, MaxWrappedKeySize),
		checkLimit(m.Limit))
}

// SealedReply is a reply whose only content is sealed to the client
// (registration finish: a SignedReceipt under the run's finish-reply key).
type SealedReply struct {
	Sealed []byte `cbor:"1,keyasint"`
}

func (m *SealedReply) validate() error { return checkRange("sealed", m.Sealed, 16, MaxSealedSize) }

// LoginStart carries OPAQUE's KE1 for a user. It travels in clear: OPAQUE
// protects it.
type LoginStart struct {
	UserID []byte `cbor:"1,keyasint"`
	KE1    []byte `cbor:"2,keyasint"`
}

func (m *LoginStart) validate() error {
	return firstErr(checkUserID(m.UserID), checkLen("ke1", m.KE1, KE1Size))
}

// LoginStartReply carries KE2, a handle for the KE3 that must follow, and a
// signed receipt saying that the attempt was counted (or that the record is
// locked).
type LoginStartReply struct {
	Handle  []byte        `cbor:"1,keyasint"`
	KE2     []byte        `cbor:"2,keyasint"`
	Receipt SignedReceipt `cbor:"3,keyasint"`
}

func (m *LoginStartReply) validate() error {
	return firstErr(checkLen("handle", m.Handle, HandleSize), checkLen("ke2", m.KE2, KE2Size), m.Receipt.validate())
}

// LoginFinish carries KE3 for the login that Handle names.
type LoginFinish struct {
	Handle []byte `cbor:"1,keyasint"`
	KE3    []byte `cbor:"2,keyasint"`
}

func (m *LoginFinish) validate() error {
	return firstErr(checkLen("handle", m.Handle, HandleSize), checkLen("ke3", m.KE3, KE3Size))
}

// LoginFinishReply is sealed under the new session (sequence 0) and holds a
// SessionReplyInner answering an implicit Release.
type LoginFinishReply = SealedReply

// Session carries one sealed command of an open session. Seq starts at 1 and
// increases by one per command; Sealed holds a SessionCommand.
type Session struct {
	Handle []byte `cbor:"1,keyasint"`
	Seq    uint64 `cbor:"2,keyasint"`
	Sealed []byte `cbor:"3,keyasint"`
}

func (m *Session) validate() error {
	if m.Seq == 0 {
		return fmt.Errorf("%w: session sequence 0 is reserved for the login reply", ErrMalformed)
	}
	return firstErr(checkLen("handle", m.Handle, HandleSize), checkRange("sealed", m.Sealed, 16, MaxSealedSize))
}

// SessionReply answers a Session command, sealed with the same sequence.
type SessionReply struct {
	Seq    uint64 `cbor:"1,keyasint"`
	Sealed []byte `cbor:"2,keyasint"`
}

func (m *SessionReply) validate() error { return checkRange("sealed", m.Sealed, 16, MaxSealedSize) }

// Command says what a sealed session command asks for.
type Command uint

const (
	CommandRelease      Command = 1 // the wrapped key again
	CommandChangeStart  Command = 2 // OPAQUE registration request for a new password
	CommandChangeFinish Command = 3 // the new record, wrapped key and limit
	CommandDelete       Command = 4 // erase the record
	CommandClose        Command = 5 // end the session
)

// SessionCommand is the plaintext of a Session message. Fields beyond Command
// are present exactly when the command needs them.
type SessionCommand struct {
	Command    Command `cbor:"1,keyasint"`
	Blinded    []byte  `cbor:"2,keyasint,omitempty"`
	Record     []byte  `cbor:"3,keyasint,omitempty"`
	WrappedKey []byte  `cbor:"4,keyasint,omitempty"`
	Limit      uint    `cbor:"5,keyasint,omitempty"`
	// Confirm is carried by the first command of a session, and only by
	// it: the ReceiptHash of the release receipt the login delivered. It
	// is what makes the login count as a success (SPEC.md, "Counting").
	Confirm []byte `cbor:"6,keyasint,omitempty"`
}

func (m *SessionCommand) validate() error {
	if len(m.Confirm) != 0 {
		if err := checkLen("confirm", m.Confirm, HashSize); err != nil {
			return err
		}
	}
	none := len(m.Blinded) == 0 && len(m.Record) == 0 && len(m.WrappedKey) == 0 && m.Limit == 0
	switch m.Command {
	case CommandRelease, CommandDelete, CommandClose:
		if !none {
			return fmt.Errorf("%w: command %d takes no arguments", ErrMalformed, m.Command)
		}
		return nil
	case CommandChangeStart:
		if len(m.Record) != 0 || len(m.WrappedKey) != 0 || m.Limit != 0 {
			return fmt.Errorf("%w: change-start takes only a blinded element", ErrMalformed)
		}
		return checkLen("blinded", m.Blinded, ElementSize)
	case CommandChangeFinish:
		if len(m.Blinded) != 0 {
			return fmt.Errorf("%w: change-finish takes no blinded element", ErrMalformed)
		}
		return (&RegisterFinishInner{Record: m.Record, WrappedKey: m.WrappedKey, Limit: m.Limit}).validate()
	}
	return fmt.Errorf("%w: unknown session command %d", ErrMalformed, m.Command)
}

// SessionReplyInner is the plaintext of a SessionReply and of the login
// reply. Fields are present exactly when the command produces them.
type SessionReplyInner struct {
	WrappedKey      []byte         `cbor:"1,keyasint,omitempty"`
	Evaluated       []byte         `cbor:"2,keyasint,omitempty"`
	ServerPublicKey []byte         `cbor:"3,keyasint,omitempty"`
	Receipt         *SignedReceipt `cbor:"4,keyasint,omitempty"`
}

func (m *SessionReplyInner) validate() error {
	if len(m.WrappedKey) != 0 {
		if err := checkRange("wrapped key", m.WrappedKey, MinWrappedKeySize, MaxWrappedKeySize); err != nil {
			return err
		}
	}
	if len(m.Evaluated) != 0 || len(m.ServerPublicKey) != 0 {
		if err := (&RegisterStartReplyInner{Evaluated: m.Evaluated, ServerPublicKey: m.ServerPublicKey}).validate(); err != nil {
			return err
		}
	}
	if m.Receipt != nil {
		return m.Receipt.validate()
	}
	return nil
}

// StatusRequest asks for the vault's signed status. Nonce is fresh and
// random for each request; the vault signs it back in the Status, so that a
// status cannot be replayed to whoever asked: a host could otherwise show an
// old status of a vault that has since been rolled back, wiped or replaced.
type StatusRequest struct {
	Nonce []byte `cbor:"1,keyasint"`
}

func (m *StatusRequest) validate() error { return checkLen("status nonce", m.Nonce, StatusNonceSize) }

// NewStatusRequest returns a status request with a fresh random nonce; pass
// the same nonce to StatusReply.Verify.
func NewStatusRequest() *StatusRequest {
	n := make([]byte, StatusNonceSize)
	rand.Read(n) // never fails (crypto/rand)
	return &StatusRequest{Nonce: n}
}

// StatusReply describes the vault as a whole. It is signed so that a client
// can trust the store sequence it reports.
type StatusReply struct {
	Body      []byte `cbor:"1,keyasint"` // a Status, encoded
	Signature []byte `cbor:"2,keyasint"`
}

func (m *StatusReply) validate() error {
	return firstErr(checkRange("status", m.Body, 1, 512), checkLen("signature", m.Signature, SignatureSize))
}

// Status is the signed content of a StatusReply.
type Status struct {
	Version       uint   `cbor:"1,keyasint"`
	StoreSequence uint64 `cbor:"2,keyasint"`
	AnchorWrites  uint64 `cbor:"3,keyasint"` // the monotonic anchor's write counter (RPMB wear)
	Insecure      bool   `cbor:"4,keyasint"`
	PendingLogins uint   `cbor:"5,keyasint"`
	OpenSessions  uint   `cbor:"6,keyasint"`
	Nonce         []byte `cbor:"7,keyasint"` // the StatusRequest's, echoed
	// FirmwareHash is the measurement of the firmware the vault runs now
	// (what the boot chain measured: a release entry's firmware hash), so
	// that a client can hold the bundle it is shown to what answers.
	FirmwareHash []byte `cbor:"8,keyasint"`
	// Records is how many records the vault's store holds, and
	// RecordCapacity its estimate of how many it holds when full (the
	// records and what its free space takes at what a record costs now):
	// what cofferd places new users by. Both 0 for a vault without a
	// record store of its own.
	Records        uint64 `cbor:"9,keyasint"`
	RecordCapacity uint64 `cbor:"10,keyasint"`
}

func (m *Status) validate() error {
	if m.Version != Version {
		return fmt.Errorf("%w: status version %d", ErrMalformed, m.Version)
	}
	if m.Records > m.RecordCapacity {
		return fmt.Errorf("%w: status has %d records of a capacity of %d", ErrMalformed, m.Records, m.RecordCapacity)
	}
	if len(m.FirmwareHash) == 0 {
		return fmt.Errorf("%w: the status carries no firmware hash (a vault firmware from before the running firmware was signed in every status)", ErrMalformed)
	}
	return firstErr(checkLen("status nonce", m.Nonce, StatusNonceSize), checkLen("status firmware hash", m.FirmwareHash, HashSize))
}

func checkUserID(id []byte) error { return checkRange("user id", id, 1, MaxUserIDSize) }

func checkLimit(limit uint) error {
	if limit < MinLimit || limit > MaxLimitCeiling {
		return fmt.Errorf("%w: attempt limit %d outside %d to %d", ErrMalformed, limit, MinLimit, MaxLimitCeiling)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
