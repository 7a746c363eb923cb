package protocol

import (
	"crypto/hkdf"
	"crypto/sha512"
	"errors"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// BackupKeySize is the size of the account's backup key K.
const BackupKeySize = 32

const contextWrap = "coffer/v1 wrap"

// ErrUnwrap is returned when a wrapped key does not open: the export key is
// wrong (a wrong password) or the bytes were altered.
var ErrUnwrap = errors.New("protocol: wrapped key does not open")

// WrapKey seals the backup key under a key derived from OPAQUE's export key:
// XChaCha20-Poly1305, random 24-byte nonce, the user id as associated data.
// The vault stores the result without being able to open it.
func WrapKey(random io.Reader, exportKey, userID, backupKey []byte) ([]byte, error) {
	key, err := hkdf.Key(sha512.New, exportKey, nil, contextWrap, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return SealWithNonce(random, key, backupKey, userID)
}

// UnwrapKey opens what WrapKey produced.
func UnwrapKey(exportKey, userID, wrapped []byte) ([]byte, error) {
	key, err := hkdf.Key(sha512.New, exportKey, nil, contextWrap, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	k, err := OpenWithNonce(key, wrapped, userID)
	if err != nil {
		return nil, ErrUnwrap
	}
	return k, nil
}

// SealWithNonce is the one layout of what Coffer seals at rest under a
// 32-byte key (a wrapped key, a realm resume blob): a random 24-byte nonce
// read from random, then XChaCha20-Poly1305 of plaintext with aad.
func SealWithNonce(random io.Reader, key, plaintext, aad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(random, nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

// OpenWithNonce opens what SealWithNonce produced; anything too short or
// that does not authenticate is ErrOpen.
func OpenWithNonce(key, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrOpen
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
