package client

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/protocol"
)

// KeySize is the size of the backup key K: 256 bits.
const KeySize = protocol.BackupKeySize

// ageIdentityInfo is the HKDF info of the K → age identity derivation
// (SPEC.md, "Backup key").
const ageIdentityInfo = "coffer/v1 age identity"

// BackupKey is an account's backup key K. There is one per account, made
// once; every backup of the account is encrypted to the age recipient derived
// from it.
type BackupKey struct {
	k [KeySize]byte
}

// NewBackupKey draws a fresh K from random (crypto/rand if nil).
func NewBackupKey(random io.Reader) (*BackupKey, error) {
	if random == nil {
		random = rand.Reader
	}
	var k BackupKey
	if _, err := io.ReadFull(random, k.k[:]); err != nil {
		return nil, fmt.Errorf("client: drawing the backup key: %w", err)
	}
	return &k, nil
}

// BackupKeyFromBytes copies a 32-byte K.
func BackupKeyFromBytes(b []byte) (*BackupKey, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("client: a backup key is %d bytes, not %d", KeySize, len(b))
	}
	var k BackupKey
	copy(k.k[:], b)
	return &k, nil
}

// Bytes returns a copy of K. The caller wipes it.
func (k *BackupKey) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// Equal compares two keys in constant time.
func (k *BackupKey) Equal(o *BackupKey) bool {
	return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1
}

// Wipe overwrites K.
func (k *BackupKey) Wipe() { clear(k.k[:]) }

// ageScalar is HKDF-SHA256(ikm = K, salt = "", info = "coffer/v1 age
// identity", 32): the X25519 secret of the account's age identity.
func (k *BackupKey) ageScalar() []byte {
	s, err := hkdf.Key(sha256.New, k.k[:], nil, ageIdentityInfo, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return s
}

// AgeIdentityString is the age identity derived from K in age's own
// encoding ("AGE-SECRET-KEY-1…"), which `age -d -i FILE` reads. It is as
// secret as K.
func (k *BackupKey) AgeIdentityString() string {
	s := k.ageScalar()
	defer clear(s)
	return bech32Encode("AGE-SECRET-KEY-", s)
}

// AgeIdentity is the age identity derived from K, parsed by age itself.
func (k *BackupKey) AgeIdentity() (*age.X25519Identity, error) {
	id, err := age.ParseX25519Identity(k.AgeIdentityString())
	if err != nil {
		return nil, fmt.Errorf("client: derived age identity: %w", err)
	}
	return id, nil
}

// AgeRecipient is the public recipient ("age1…") every backup of the
// account is encrypted to. It is not secret and is kept in the configuration.
func (k *BackupKey) AgeRecipient() (string, error) {
	id, err := k.AgeIdentity()
	if err != nil {
		return "", err
	}
	return id.Recipient().String(), nil
}

// ParseRecipient reads an age X25519 recipient ("age1…").
func ParseRecipient(s string) (*age.X25519Recipient, error) {
	if s == "" {
		return nil, errors.New("client: no age recipient configured")
	}
	r, err := age.ParseX25519Recipient(s)
	if err != nil {
		return nil, fmt.Errorf("client: age recipient %q: %w", s, err)
	}
	return r, nil
}

// KeyOpensBackup is a RealmOptions.CheckKey: K must open the age file
// backup (its header: K's identity unwraps the file key and the header's
// MAC verifies). The payload is not read.
func KeyOpensBackup(backup []byte) func(*BackupKey) error {
	return func(k *BackupKey) error {
		id, err := k.AgeIdentity()
		if err != nil {
			return err
		}
		if _, err := age.Decrypt(bytes.NewReader(backup), id); err != nil {
			return fmt.Errorf("the backup does not open with it: %w", err)
		}
		return nil
	}
}
