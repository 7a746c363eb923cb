package bootcheck

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Refusals, wrapped with details (and, for a proof that does not verify,
// releaselog's own error: ErrBadCheckpoint, ErrNotWitnessed,
// ErrNotIncluded, ErrMalformedEntry).
var (
	ErrNotLogged    = errors.New("the OS image's proof does not verify against the release log policy")
	ErrNotRelease   = errors.New("the logged entry is not a release")
	ErrWrongBoard   = errors.New("the logged release is for another board")
	ErrHashMismatch = errors.New("the OS image's SHA-256 differs from the logged release's firmware hash")
	ErrDowngrade    = errors.New("the logged release is older than the minimum version this device boots")
)

// releaseKeyIDLabel starts what ReleaseKeyID hashes, so that the ID is no
// other hash of the key (the note key hash is SHA-256 of the name, a
// newline, the type and the key, with no label).
const releaseKeyIDLabel = "coffer/release key id v1\n"

// ReleaseKeyID names the policy's release key by the key itself, whatever
// its spelling in the policy (the note library reads the key hash in
// either case, and skips carriage returns in the base64): SHA-256 of
// releaseKeyIDLabel, the key's name, a newline (which no key name holds),
// the key's type byte (1: Ed25519) and its 32-byte public key. The OS
// derives the vault's store key under it (tos.DeriveKeys), so two spellings
// of one key must open the same vault, and two keys never.
func ReleaseKeyID(p *releaselog.Policy) (tos.ReleaseKeyID, error) {
	v, err := note.NewVerifier(p.LogKey)
	if err != nil {
		return tos.ReleaseKeyID{}, fmt.Errorf("%w: release key: %v", releaselog.ErrBadPolicy, err)
	}
	// The fields as note.NewVerifier cut them: name+hash+base64(type key).
	_, rest, _ := strings.Cut(p.LogKey, "+")
	_, key64, _ := strings.Cut(rest, "+")
	key, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != 1 {
		return tos.ReleaseKeyID{}, fmt.Errorf("%w: the release key is not an Ed25519 note key", releaselog.ErrBadPolicy)
	}
	h := sha256.New()
	h.Write([]byte(releaseKeyIDLabel))
	h.Write([]byte(v.Name()))
	h.Write([]byte{'\n'})
	h.Write(key)
	return tos.ReleaseKeyID(h.Sum(nil)), nil
}

// Result is a verified boot: what the OS is told, and the release.
type Result struct {
	Info       tos.BootInfo
	Release    *releaselog.Release
	Checkpoint *releaselog.Checkpoint
}

// Check decides whether osELF, with its proof bundle, may boot on board
// (a releaselog board name) under policy, given the minimum release
// version kept in RPMB.
func Check(policy *releaselog.Policy, board string, osELF, proof []byte, minVersion uint64) (*Result, error) {
	pr, err := releaselog.ParseProof(proof)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLogged, err)
	}
	e, cp, err := policy.VerifyProof(pr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLogged, err)
	}
	if e.Kind != releaselog.KindRelease || e.Release == nil {
		return nil, fmt.Errorf("%w: entry %d is a %v", ErrNotRelease, pr.Index, e.Kind)
	}
	r := e.Release
	if r.Board != board {
		return nil, fmt.Errorf("%w: entry %d is release %d for %q, this is %q", ErrWrongBoard, pr.Index, r.Version, r.Board, board)
	}
	sum := sha256.Sum256(osELF)
	if !bytes.Equal(sum[:], r.Firmware) {
		return nil, fmt.Errorf("%w: image %x, release %d (entry %d) logs %x", ErrHashMismatch, sum, r.Version, pr.Index, r.Firmware)
	}
	if r.Version < minVersion {
		return nil, fmt.Errorf("%w: release %d, minimum %d", ErrDowngrade, r.Version, minVersion)
	}
	keyID, err := ReleaseKeyID(policy)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotLogged, err)
	}
	return &Result{
		Info:       tos.BootInfo{OSHash: sum, Release: r.Version, ReleaseKey: keyID},
		Release:    r,
		Checkpoint: cp,
	}, nil
}
