package client

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cofferhsm/coffer/protocol"
)

// The resume blob (REALMS.md 5.7): everything a version's change must
// still deliver, sealed under a key only a holder of K derives, so that any
// device that recovers K can finish the change (rule C6) after the device
// that made it wiped the shares.

const (
	resumeLabel = "coffer/v1 realm resume"
	// maxResumeBlob is cofferd's limit on a blob (host/API.md).
	maxResumeBlob = 4096
)

// ResumeMaterial is one realm's part of a version: what a put-version or
// an open registration delivers, and the unlock key that opens sessions on
// the version there.
type ResumeMaterial struct {
	Index     uint   `cbor:"1,keyasint"`
	Share     []byte `cbor:"2,keyasint"`
	UnlockKey []byte `cbor:"3,keyasint"`
}

// ResumeBody is the plaintext of a resume blob:
// {1: manifest_hash, 2: [n {1: index, 2: share, 3: unlock_key}]}.
type ResumeBody struct {
	ManifestHash []byte           `cbor:"1,keyasint"`
	Materials    []ResumeMaterial `cbor:"2,keyasint"`
}

// Wipe zeroes the shares and unlock keys.
func (b *ResumeBody) Wipe() {
	for i := range b.Materials {
		clear(b.Materials[i].Share)
		clear(b.Materials[i].UnlockKey)
	}
}

// material returns the material of manifest index i, or nil.
func (b *ResumeBody) material(i uint) *ResumeMaterial {
	for j := range b.Materials {
		if b.Materials[j].Index == i {
			return &b.Materials[j]
		}
	}
	return nil
}

var resumeDec cbor.DecMode

func init() {
	var err error
	if resumeDec, err = (cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   4,
		MaxMapPairs:       16,
		MaxArrayElements:  16,
		IntDec:            cbor.IntDecConvertNone,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// resumeKey is HKDF-SHA512(ikm = K, salt = "", info = "coffer/v1 realm
// resume" ‖ version_id, 32).
func resumeKey(backupKey, versionID []byte) ([]byte, error) {
	if len(backupKey) != 32 || len(versionID) != protocol.VersionIDSize {
		return nil, errors.New("client: a resume key needs a 32-byte key and a 16-byte version id")
	}
	return hkdf.Key(sha512.New, backupKey, nil, resumeLabel+string(versionID), chacha20poly1305.KeySize)
}

func resumeAAD(manifestHash []byte) []byte {
	return append([]byte(resumeLabel), manifestHash...)
}

// SealResume seals body for the version versionID under K with a nonce read
// from random: nonce(24) ‖ XChaCha20-Poly1305(resume_key, nonce, body,
// aad = "coffer/v1 realm resume" ‖ manifest_hash).
func SealResume(random io.Reader, backupKey, versionID []byte, body *ResumeBody) ([]byte, error) {
	if len(body.ManifestHash) != protocol.HashSize || len(body.Materials) == 0 || len(body.Materials) > protocol.MaxRealms {
		return nil, errors.New("client: a resume body needs a manifest hash and 1 to 8 materials")
	}
	plain, err := evidenceEnc.Marshal(body)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	key, err := resumeKey(backupKey, versionID)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	blob, err := protocol.SealWithNonce(random, key, plain, resumeAAD(body.ManifestHash))
	if err != nil {
		return nil, err
	}
	if len(blob) > maxResumeBlob {
		return nil, fmt.Errorf("client: a resume blob of %d bytes is over cofferd's %d", len(blob), maxResumeBlob)
	}
	return blob, nil
}

// ErrBadResume: a resume blob that does not open under K for this version
// (another key, another version, or bytes a host changed).
var ErrBadResume = errors.New("the resume blob does not open under your key for this version")

// OpenResume opens a resume blob of the version versionID, whose manifest
// has manifestHash, under K, and checks that it names that manifest and
// holds well-formed materials with distinct indices.
func OpenResume(blob, backupKey, versionID, manifestHash []byte) (*ResumeBody, error) {
	if len(blob) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead || len(blob) > maxResumeBlob {
		return nil, fmt.Errorf("client: %w (%d bytes)", ErrBadResume, len(blob))
	}
	key, err := resumeKey(backupKey, versionID)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	plain, err := protocol.OpenWithNonce(key, blob, resumeAAD(manifestHash))
	if err != nil {
		return nil, fmt.Errorf("client: %w", ErrBadResume)
	}
	defer clear(plain)
	var body ResumeBody
	if err := resumeDec.Unmarshal(plain, &body); err != nil {
		return nil, fmt.Errorf("client: %w: %v", ErrBadResume, err)
	}
	if !bytes.Equal(body.ManifestHash, manifestHash) {
		body.Wipe()
		return nil, fmt.Errorf("client: %w: it names another manifest", ErrBadResume)
	}
	if len(body.Materials) == 0 || len(body.Materials) > protocol.MaxRealms {
		body.Wipe()
		return nil, fmt.Errorf("client: %w: %d materials", ErrBadResume, len(body.Materials))
	}
	seen := map[uint]bool{}
	for _, m := range body.Materials {
		if m.Index < 1 || m.Index > protocol.MaxRealms || seen[m.Index] ||
			len(m.Share) != protocol.ScalarSize || len(m.UnlockKey) != protocol.UnlockKeySize {
			body.Wipe()
			return nil, fmt.Errorf("client: %w: a malformed or repeated material", ErrBadResume)
		}
		seen[m.Index] = true
	}
	return &body, nil
}

// PutBlob stores a resume blob at cofferd under its version's manifest
// hash (PUT /v1/realms/blob/{hex}).
func (c *Conn) PutBlob(ctx context.Context, manifestHash, blob []byte) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/realms/blob/"+hex.EncodeToString(manifestHash), blob, "put-blob")
	return err
}

// GetBlob fetches the resume blob stored under manifestHash. Nothing about
// it is trusted until OpenResume opens it under K.
func (c *Conn) GetBlob(ctx context.Context, manifestHash []byte) ([]byte, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/realms/blob/"+hex.EncodeToString(manifestHash), nil, "get-blob")
	if err == nil && len(b) > maxResumeBlob {
		return nil, errors.New("get-blob: cofferd served a blob over 4 KiB")
	}
	return b, err
}

// DeleteBlob deletes the resume blob stored under manifestHash.
func (c *Conn) DeleteBlob(ctx context.Context, manifestHash []byte) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/realms/blob/"+hex.EncodeToString(manifestHash), nil, "delete-blob")
	return err
}

// DeleteManifest deletes the manifest stored under manifestHash.
func (c *Conn) DeleteManifest(ctx context.Context, manifestHash []byte) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/realms/manifest/"+hex.EncodeToString(manifestHash), nil, "delete-manifest")
	return err
}
