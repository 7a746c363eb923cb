package realmkey

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"

	"github.com/cofferhsm/coffer/protocol"
)

// Labels of the key schedule (REALMS.md 5.2 and 5.4).
const (
	checkLabel   = "coffer/v1 realm check"
	exportLabel  = "coffer/v1 realm export"
	unlockLabel  = "coffer/v1 realm unlock"
	tagLabel     = "coffer/v1 realm tag"
	sessionLabel = "coffer/v1 realm session"
)

// Fixed sizes the schedule relies on: ctx = version_id ‖ lp(set_id) is
// unambiguous only because version_id has one length.
const (
	idSize        = 16 // version_id and set_id
	keySize       = 32 // unlock_i, R_i, X, ticket nonce, K
	checkSize     = 32
	exportSize    = 64
	sessionSize   = 64
	signingKeyLen = 32
)

// Stretch is Argon2id on the VOPRF output with SPEC.md's fixed parameters
// and an empty salt (RFC 9807's Stretch, REALMS.md 5.1).
func Stretch(y []byte) []byte {
	return argon2.IDKey(y, nil, protocol.Argon2idPasses, protocol.Argon2idMemoryKiB, protocol.Argon2idLanes, protocol.Argon2idLength)
}

// Schedule is the key schedule of one version for one password guess
// (REALMS.md 5.2): the check value, the export key that wraps K, and the
// pseudorandom key the unlock keys come from.
type Schedule struct {
	Check  [checkSize]byte
	Export [exportSize]byte
	prk    []byte
	ctx    []byte
}

// NewSchedule stretches y (Argon2id, the expensive step) and derives the
// schedule of version versionID of set setID.
func NewSchedule(y, versionID, setID []byte) (*Schedule, error) {
	if len(y) != OutputSize {
		return nil, fmt.Errorf("realmkey: VOPRF output of %d bytes, want %d", len(y), OutputSize)
	}
	s := Stretch(y)
	defer wipe(s)
	return NewScheduleStretched(y, s, versionID, setID)
}

// NewScheduleStretched is NewSchedule with s = Stretch(y) already computed,
// for tests and benchmarks.
func NewScheduleStretched(y, s, versionID, setID []byte) (*Schedule, error) {
	if len(y) != OutputSize || len(s) != protocol.Argon2idLength {
		return nil, fmt.Errorf("realmkey: VOPRF output of %d bytes and stretch of %d, want %d and %d", len(y), len(s), OutputSize, protocol.Argon2idLength)
	}
	if len(versionID) != idSize || len(setID) != idSize {
		return nil, fmt.Errorf("realmkey: version id of %d bytes and set id of %d, want %d each", len(versionID), len(setID), idSize)
	}
	ikm := make([]byte, 0, len(y)+len(s))
	ikm = append(append(ikm, y...), s...)
	defer wipe(ikm)
	prk, err := hkdf.Extract(sha512.New, ikm, nil)
	if err != nil {
		return nil, fmt.Errorf("realmkey: HKDF-Extract: %w", err)
	}
	sch := &Schedule{prk: prk}
	sch.ctx = append(append(append([]byte{}, versionID...), byte(len(setID))), setID...)
	check, err := hkdf.Expand(sha512.New, prk, checkLabel+string(sch.ctx), checkSize)
	if err != nil {
		return nil, fmt.Errorf("realmkey: HKDF-Expand: %w", err)
	}
	copy(sch.Check[:], check)
	export, err := hkdf.Expand(sha512.New, prk, exportLabel+string(sch.ctx), exportSize)
	if err != nil {
		return nil, fmt.Errorf("realmkey: HKDF-Expand: %w", err)
	}
	copy(sch.Export[:], export)
	wipe(export)
	return sch, nil
}

// UnlockKey is unlock_i = HKDF-Expand(prk, "coffer/v1 realm unlock" ‖ ctx ‖
// u8(i) ‖ R_i, 32) for realm index i with identity signing key R_i. It
// panics on an index outside 1..MaxRealms, a key that is not 32 bytes or a
// wiped schedule: callers pass values from a manifest they have checked.
func (s *Schedule) UnlockKey(index int, realmSigningKey []byte) []byte {
	if index < 1 || index > MaxRealms || len(realmSigningKey) != signingKeyLen {
		panic("realmkey: UnlockKey needs an index in 1..8 and a 32-byte signing key")
	}
	if s.prk == nil {
		panic("realmkey: UnlockKey on a wiped schedule")
	}
	info := make([]byte, 0, len(unlockLabel)+len(s.ctx)+1+len(realmSigningKey))
	info = append(append(append(append(info, unlockLabel...), s.ctx...), byte(index)), realmSigningKey...)
	key, err := hkdf.Expand(sha512.New, s.prk, string(info), keySize)
	if err != nil {
		panic("realmkey: HKDF-Expand of 32 bytes failed: " + err.Error())
	}
	return key
}

// CheckMatches compares check with the schedule's check value in constant
// time: the password was right exactly when it matches (REALMS.md 5.3).
func (s *Schedule) CheckMatches(check []byte) bool {
	return subtle.ConstantTimeCompare(s.Check[:], check) == 1
}

// Wipe zeroes every key of the schedule.
func (s *Schedule) Wipe() {
	wipe(s.Check[:])
	wipe(s.Export[:])
	wipe(s.prk)
	s.prk = nil
}

// Tag is a client's unlock tag for one ticket (REALMS.md 5.4):
// HMAC-SHA256(unlock_i, "coffer/v1 realm tag" ‖ 0x00 ‖ handle ‖ ticket_nonce).
// The handle and nonce have fixed sizes (16 and 32 bytes), set by the realm.
func Tag(unlockKey, handle, ticketNonce []byte) []byte {
	m := hmac.New(sha256.New, unlockKey)
	m.Write([]byte(tagLabel))
	m.Write([]byte{0})
	m.Write(handle)
	m.Write(ticketNonce)
	return m.Sum(nil)
}

// TagValid is the realm's check of a tag, in constant time.
func TagValid(unlockKey, handle, ticketNonce, tag []byte) bool {
	return hmac.Equal(Tag(unlockKey, handle, ticketNonce), tag)
}

// SessionSecret is session_secret = HKDF-SHA512(ikm = unlock_i ‖ X,
// salt = ticket_nonce, info = "coffer/v1 realm session", 64) (REALMS.md
// 5.4), where X is the 32-byte HPKE export of the unlock request.
func SessionSecret(unlockKey, exported, ticketNonce []byte) ([]byte, error) {
	if len(unlockKey) != keySize || len(exported) != keySize || len(ticketNonce) != keySize {
		return nil, errors.New("realmkey: session secret needs a 32-byte unlock key, export and ticket nonce")
	}
	ikm := append(append(make([]byte, 0, 2*keySize), unlockKey...), exported...)
	defer wipe(ikm)
	secret, err := hkdf.Key(sha512.New, ikm, ticketNonce, sessionLabel, sessionSize)
	if err != nil {
		return nil, fmt.Errorf("realmkey: HKDF: %w", err)
	}
	return secret, nil
}
