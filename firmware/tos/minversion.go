package tos

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/internal/storage"
)

// The boot chain's anti-rollback: the lowest release Version the bootloader
// boots, kept in a block of the RPMB partition the store's anchor does not
// use, under the same device-only RPMB key, together with the ID of the
// release key it counts for. The bootloader reads it (ReadMinVersion) and
// refuses an older release; an OS it booted raises it to its own release
// (RaiseMinVersion), never lowers it.
//
// The RPMB key is not diversified by the release key (see DeriveKeys): the
// eMMC takes its key once, so a diversified one would leave a device
// provisioned under one release key without a usable RPMB partition under
// any other, for ever. Instead the first release key whose OS writes the
// block owns it: a bootloader or OS of another release key (a rotated log,
// a TEST policy, another operator's log, whose version numbers mean
// nothing here) refuses it, so an OS of theirs never runs on the device and
// never writes the partition: it can neither lower the minimum nor roll the
// store's anchor back. Moving a device to another release key is
// re-provisioning it (protocol/RELEASES.md, section 7).

// minVersionBlock is the RPMB block that holds the minimum release version.
const minVersionBlock = 1

// The block: minVersionMagic, the version (uint64, big-endian), the owning
// release key's ID (32 bytes), zeros. An all-zero block was never written:
// minimum 0, no owner. The first format ("CMINVER1", no owner) is refused.
const minVersionMagic = "CMINVER2"

const minVersionEnd = len(minVersionMagic) + 8 + len(ReleaseKeyID{})

// ErrForeignReleaseKey: the minimum version block belongs to another
// release key than the one the caller runs under.
var ErrForeignReleaseKey = errors.New("rpmb: the minimum release version belongs to another release key")

var errNoReleaseKey = errors.New("rpmb: the minimum release version is kept only for a release key (none given)")

// ReadMinVersion returns the minimum release version kept in the RPMB
// partition behind t for release (the bootloader's policy's key), read
// with a fresh nonce and checked under key.
//
//   - fuse not blown and the partition says it has no key: the device was
//     never provisioned (no vault exists, nothing to roll back): 0;
//   - a block never written: 0;
//   - a block owned by another release key: ErrForeignReleaseKey (the
//     caller refuses to boot);
//   - anything else than an authenticated answer: an error (the caller
//     refuses to boot), including "no key" with the fuse blown, which is
//     forged (see OpenAnchor).
func ReadMinVersion(t storage.RPMBTransport, key [32]byte, fuse Fuse, release ReleaseKeyID) (uint64, error) {
	if release == (ReleaseKeyID{}) {
		return 0, errNoReleaseKey
	}
	blown, err := fuse.Blown()
	if err != nil {
		return 0, fmt.Errorf("rpmb: reading the provisioning fuse: %w", err)
	}
	data, _, err := storage.NewRPMBAnchor(t, key, minVersionBlock).Read()
	switch {
	case err == nil:
		v, owner, err := parseMinVersion(data)
		if err != nil {
			return 0, err
		}
		return v, checkOwner(owner, release)
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

// RaiseMinVersion sets the minimum release version for release to v if it
// is lower, with an authenticated write (the partition's write counter goes
// up by one); a block never written is claimed for release. It never lowers
// the minimum, and refuses (ErrForeignReleaseKey) a block another release
// key owns. The partition must already hold key (OpenAnchor succeeded).
func RaiseMinVersion(t storage.RPMBTransport, key [32]byte, release ReleaseKeyID, v uint64) error {
	if release == (ReleaseKeyID{}) {
		return errNoReleaseKey
	}
	a := storage.NewRPMBAnchor(t, key, minVersionBlock)
	data, _, err := a.Read()
	if err != nil {
		return fmt.Errorf("rpmb: reading the minimum release version: %w", err)
	}
	cur, owner, err := parseMinVersion(data)
	if err != nil {
		return err
	}
	blank := owner == (ReleaseKeyID{})
	if !blank {
		if err := checkOwner(owner, release); err != nil {
			return err
		}
		if cur >= v {
			return nil
		}
	}
	blk := encodeMinVersion(v, release)
	if _, err := a.Write(blk); err != nil {
		return fmt.Errorf("rpmb: writing the minimum release version: %w", err)
	}
	return nil
}

// checkOwner: a block never written (zero owner) counts for any release
// key; an owned one only for its owner.
func checkOwner(owner, release ReleaseKeyID) error {
	if owner == (ReleaseKeyID{}) || owner == release {
		return nil
	}
	return fmt.Errorf("%w: it is kept for release key id %x, this is %x (moving a device to another release key is re-provisioning it)", ErrForeignReleaseKey, owner, release)
}

func encodeMinVersion(v uint64, owner ReleaseKeyID) [storage.RPMBBlockSize]byte {
	var b [storage.RPMBBlockSize]byte
	n := copy(b[:], minVersionMagic)
	binary.BigEndian.PutUint64(b[n:], v)
	copy(b[n+8:], owner[:])
	return b
}

// parseMinVersion decodes the block: the version and its owner (zero for
// a block never written).
func parseMinVersion(b [storage.RPMBBlockSize]byte) (uint64, ReleaseKeyID, error) {
	var owner ReleaseKeyID
	if b == ([storage.RPMBBlockSize]byte{}) {
		return 0, owner, nil
	}
	n := len(minVersionMagic)
	copy(owner[:], b[n+8:minVersionEnd])
	if string(b[:n]) != minVersionMagic || owner == (ReleaseKeyID{}) ||
		[storage.RPMBBlockSize - minVersionEnd]byte(b[minVersionEnd:]) != ([storage.RPMBBlockSize - minVersionEnd]byte{}) {
		return 0, ReleaseKeyID{}, &TamperError{"the RPMB block of the minimum release version holds something else"}
	}
	return binary.BigEndian.Uint64(b[n:]), owner, nil
}
