package realmkey

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base32"
	"errors"
	"fmt"
)

const (
	anchorLabel  = "coffer/v1 realm anchor"
	setCodeLabel = "coffer/v1 realm set code"
	setCodeBytes = 10 // 80 bits, 16 base32 characters
)

// setCodeEncoding is RFC 4648 base32, upper case, without padding.
var setCodeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// AnchorKey is the set's anchor (REALMS.md 5.6): the Ed25519 key whose seed
// is HKDF-SHA512(ikm = K, salt = "", info = "coffer/v1 realm anchor" ‖
// set_id, 32). Only a holder of K can sign a manifest with it.
func AnchorKey(backupKey, setID []byte) (ed25519.PrivateKey, error) {
	if len(backupKey) != keySize || len(setID) != idSize {
		return nil, errors.New("realmkey: the anchor needs a 32-byte backup key and a 16-byte set id")
	}
	seed, err := hkdf.Key(sha512.New, backupKey, nil, anchorLabel+string(setID), ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("realmkey: HKDF: %w", err)
	}
	defer wipe(seed)
	return ed25519.NewKeyFromSeed(seed), nil
}

// SetCode is the code a user types on a fresh device to pin the anchor
// (REALMS.md 5.6): base32 of the first 10 bytes of
// SHA-256("coffer/v1 realm set code" ‖ 0x00 ‖ set_id ‖ anchor), 16
// characters.
func SetCode(setID, anchorPublic []byte) string {
	h := sha256.New()
	h.Write([]byte(setCodeLabel))
	h.Write([]byte{0})
	h.Write(setID)
	h.Write(anchorPublic)
	return setCodeEncoding.EncodeToString(h.Sum(nil)[:setCodeBytes])
}
