package protocol

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Context strings of the two channels (SPEC.md, "Key schedule").
const (
	hpkeInfoRegister     = "coffer/v1 register"
	exportRegisterReply  = "coffer/v1 register reply"
	exportRegisterFinish = "coffer/v1 register finish"
	sessionToVault       = "coffer/v1 session to-vault"
	sessionToClient      = "coffer/v1 session to-client"
)

// ErrOpen is returned when a sealed message does not authenticate. It says
// nothing more, on purpose.
var ErrOpen = errors.New("protocol: sealed message does not authenticate")

// The registration channel's HPKE suite: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20-Poly1305 (RFC 9180 ids 0x0020, 0x0001, 0x0003).
func hpkeSuite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()
}

// ChannelKey is a 256-bit ChaCha20-Poly1305 key of one channel direction.
type ChannelKey [chacha20poly1305.KeySize]byte

// Wipe overwrites the key.
func (k *ChannelKey) Wipe() { clear(k[:]) }

// RegistrationKeys are exported from the HPKE context of a registration, as
// Oblivious HTTP does for its responses: Reply seals the vault's two replies
// (sequence 0 and 1), Finish seals the client's RegisterFinish (sequence 0).
type RegistrationKeys struct {
	Reply, Finish ChannelKey
}

// Wipe overwrites both keys.
func (k *RegistrationKeys) Wipe() { k.Reply.Wipe(); k.Finish.Wipe() }

// SealRegistration is the client's half of opening a registration channel to
// the vault's HPKE public key.
func SealRegistration(vaultHPKEKey []byte, inner *RegisterStartInner) (enc, sealed []byte, keys RegistrationKeys, err error) {
	plaintext, err := Marshal(inner)
	if err != nil {
		return nil, nil, keys, err
	}
	kem, kdf, aead := hpkeSuite()
	pk, err := kem.NewPublicKey(vaultHPKEKey)
	if err != nil {
		return nil, nil, keys, fmt.Errorf("protocol: vault HPKE key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, []byte(hpkeInfoRegister))
	if err != nil {
		return nil, nil, keys, err
	}
	if sealed, err = sender.Seal(nil, plaintext); err != nil {
		return nil, nil, keys, err
	}
	if err := exportRegistrationKeys(sender.Export, &keys); err != nil {
		return nil, nil, keys, err
	}
	return enc, sealed, keys, nil
}

// OpenRegistration is the vault's half: it opens a RegisterStart and derives
// the same channel keys.
func OpenRegistration(key hpke.PrivateKey, m *RegisterStart) (*RegisterStartInner, RegistrationKeys, error) {
	var keys RegistrationKeys
	_, kdf, aead := hpkeSuite()
	recipient, err := hpke.NewRecipient(m.Enc, key, kdf, aead, []byte(hpkeInfoRegister))
	if err != nil {
		return nil, keys, ErrOpen
	}
	plaintext, err := recipient.Open(nil, m.Sealed)
	if err != nil {
		return nil, keys, ErrOpen
	}
	var inner RegisterStartInner
	if err := Unmarshal(plaintext, &inner); err != nil {
		return nil, keys, err
	}
	if string(inner.UserID) != string(m.UserID) {
		return nil, keys, fmt.Errorf("%w: sealed user id differs from the routed one", ErrMalformed)
	}
	if err := exportRegistrationKeys(recipient.Export, &keys); err != nil {
		return nil, keys, err
	}
	return &inner, keys, nil
}

func exportRegistrationKeys(export func(string, int) ([]byte, error), keys *RegistrationKeys) error {
	for _, k := range []struct {
		label string
		dst   *ChannelKey
	}{{exportRegisterReply, &keys.Reply}, {exportRegisterFinish, &keys.Finish}} {
		b, err := export(k.label, len(k.dst))
		if err != nil {
			return err
		}
		copy(k.dst[:], b)
		clear(b)
	}
	return nil
}

// GenerateHPKEKey makes a vault's X25519 HPKE key from 32 random bytes.
func HPKEKeyFromBytes(seed []byte) (hpke.PrivateKey, error) {
	kem, _, _ := hpkeSuite()
	return kem.NewPrivateKey(seed)
}

// SessionKeys are the two directions of a session opened by a login.
type SessionKeys struct {
	ToVault, ToClient ChannelKey
}

// Wipe overwrites both keys.
func (k *SessionKeys) Wipe() { k.ToVault.Wipe(); k.ToClient.Wipe() }

// DeriveSessionKeys derives a session's keys from the OPAQUE session key,
// salted with the login handle so that keys are unique per session.
func DeriveSessionKeys(opaqueSessionKey, handle []byte) (SessionKeys, error) {
	var keys SessionKeys
	for _, k := range []struct {
		label string
		dst   *ChannelKey
	}{{sessionToVault, &keys.ToVault}, {sessionToClient, &keys.ToClient}} {
		b, err := hkdf.Key(sha512.New, opaqueSessionKey, handle, k.label, len(k.dst))
		if err != nil {
			return keys, err
		}
		copy(k.dst[:], b)
		clear(b)
	}
	return keys, nil
}

// Seal encrypts plaintext under key with the nonce made from seq. Each (key,
// seq) pair must be used once; the protocol guarantees it by giving every
// direction its own key and every message its own sequence number.
func Seal(key *ChannelKey, seq uint64, aad, plaintext []byte) []byte {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err) // the key size is fixed by the type
	}
	return aead.Seal(nil, nonce(seq), plaintext, aad)
}

// Open decrypts what Seal produced; any failure is ErrOpen.
func Open(key *ChannelKey, seq uint64, aad, ciphertext []byte) ([]byte, error) {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err)
	}
	plaintext, err := aead.Open(nil, nonce(seq), ciphertext, aad)
	if err != nil {
		return nil, ErrOpen
	}
	return plaintext, nil
}

func nonce(seq uint64) []byte {
	n := make([]byte, chacha20poly1305.NonceSize)
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

// SealMessage encodes m and seals it.
func SealMessage(key *ChannelKey, seq uint64, aad []byte, m Message) ([]byte, error) {
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return Seal(key, seq, aad, b), nil
}

// OpenMessage opens and strictly decodes a sealed message.
func OpenMessage(key *ChannelKey, seq uint64, aad, ciphertext []byte, m Message) error {
	b, err := Open(key, seq, aad, ciphertext)
	if err != nil {
		return err
	}
	defer clear(b)
	return Unmarshal(b, m)
}
