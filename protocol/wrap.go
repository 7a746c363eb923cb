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
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(backupKey)+aead.Overhead())
	if _, err := io.ReadFull(random, nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, backupKey, userID), nil
}

// UnwrapKey opens what WrapKey produced.
func UnwrapKey(exportKey, userID, wrapped []byte) ([]byte, error) {
	if len(wrapped) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrUnwrap
	}
	key, err := hkdf.Key(sha512.New, exportKey, nil, contextWrap, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	k, err := aead.Open(nil, wrapped[:chacha20poly1305.NonceSizeX], wrapped[chacha20poly1305.NonceSizeX:], userID)
	if err != nil {
		return nil, ErrUnwrap
	}
	return k, nil
}
