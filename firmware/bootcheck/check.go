package bootcheck

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

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

// ReleaseKeyID names the policy's release key: the SHA-256 of its note
// verifier key, as written in the policy.
func ReleaseKeyID(p *releaselog.Policy) tos.ReleaseKeyID {
	return sha256.Sum256([]byte(p.LogKey))
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
	return &Result{
		Info:       tos.BootInfo{OSHash: sum, Release: r.Version, ReleaseKey: ReleaseKeyID(policy)},
		Release:    r,
		Checkpoint: cp,
	}, nil
}
