package tos

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/internal/storage"
)

// The boot chain's anti-rollback: the lowest release Version the bootloader
// boots, kept in a block of the RPMB partition the store's anchor does not
// use, under the same device-only RPMB key. The bootloader reads it
// (ReadMinVersion) and refuses an older release; an OS it booted raises it
// to its own release (RaiseMinVersion), never lowers it.

// minVersionBlock is the RPMB block that holds the minimum release version.
const minVersionBlock = 1

// The block: minVersionMagic, the version (uint64, big-endian), zeros. An
// all-zero block was never written: minimum 0.
const minVersionMagic = "CMINVER1"

// ReadMinVersion returns the minimum release version kept in the RPMB
// partition behind t, read with a fresh nonce and checked under key.
//
//   - fuse not blown and the partition says it has no key: the device was
//     never provisioned (no vault exists, nothing to roll back): 0;
//   - anything else than an authenticated answer: an error (the caller
//     refuses to boot), including "no key" with the fuse blown, which is
//     forged (see OpenAnchor).
func ReadMinVersion(t storage.RPMBTransport, key [32]byte, fuse Fuse) (uint64, error) {
	blown, err := fuse.Blown()
	if err != nil {
		return 0, fmt.Errorf("rpmb: reading the provisioning fuse: %w", err)
	}
	data, _, err := storage.NewRPMBAnchor(t, key, minVersionBlock).Read()
	switch {
	case err == nil:
		return parseMinVersion(data)
	case keyNotProgrammed(err) && !blown:
		return 0, nil
	case keyNotProgrammed(err):
		return 0, &TamperError{"the provisioning fuse says the RPMB key was programmed, but the partition says it has none"}
	}
	var te interface{ Tampered() bool }
	if errors.As(err, &te) && te.Tampered() {
		return 0, &TamperError{fmt.Sprintf("reading the minimum release version: %v", err)}
	}
	return 0, fmt.Errorf("rpmb: reading the minimum release version: %w", err)
}

// RaiseMinVersion sets the minimum release version to v if it is lower, with
// an authenticated write (the partition's write counter goes up by one). It
// never lowers it. The partition must already hold key (OpenAnchor
// succeeded).
func RaiseMinVersion(t storage.RPMBTransport, key [32]byte, v uint64) error {
	a := storage.NewRPMBAnchor(t, key, minVersionBlock)
	data, _, err := a.Read()
	if err != nil {
		return fmt.Errorf("rpmb: reading the minimum release version: %w", err)
	}
	cur, err := parseMinVersion(data)
	if err != nil || cur >= v {
		return err
	}
	var blk [storage.RPMBBlockSize]byte
	copy(blk[:], minVersionMagic)
	binary.BigEndian.PutUint64(blk[len(minVersionMagic):], v)
	if _, err := a.Write(blk); err != nil {
		return fmt.Errorf("rpmb: writing the minimum release version: %w", err)
	}
	return nil
}

func parseMinVersion(b [storage.RPMBBlockSize]byte) (uint64, error) {
	if b == ([storage.RPMBBlockSize]byte{}) {
		return 0, nil
	}
	n := len(minVersionMagic)
	rest := b[n+8:]
	if string(b[:n]) != minVersionMagic || [storage.RPMBBlockSize - 16]byte(rest) != ([storage.RPMBBlockSize - 16]byte{}) {
		return 0, &TamperError{"the RPMB block of the minimum release version holds something else"}
	}
	return binary.BigEndian.Uint64(b[n:]), nil
}
