package protocol

import (
	"crypto/hkdf"
	"crypto/sha512"
	"encoding/binary"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"
)

// Context strings of the session channel (SPEC.md, "Session"); the
// registration channel's are in registration.go.
const (
	sessionToVault  = "coffer/v1 session to-vault"
	sessionToClient = "coffer/v1 session to-client"
)

// ErrOpen is returned when a sealed message does not authenticate. It says
// nothing more, on purpose.
var ErrOpen = errors.New("protocol: sealed message does not authenticate")

// ChannelKey is a 256-bit ChaCha20-Poly1305 key of one channel direction.
type ChannelKey [chacha20poly1305.KeySize]byte

// Wipe overwrites the key.
func (k *ChannelKey) Wipe() { clear(k[:]) }

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
