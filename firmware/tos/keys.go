package tos

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// Keys are the per-purpose keys the OS derives from the board's
// device-unique key. Each is used for one thing only, so that whoever learns
// one (the applet holds StoreKey) learns nothing about the others or about
// the device key.
type Keys struct {
	// Store seals the record store (store.Options.SealingKey): the only
	// key the applet is given. It is bound to the release key that signed
	// the running OS (see DeriveKeys).
	Store [32]byte
	// RPMB authenticates every RPMB frame. It stays in the OS, which owns
	// the partition, and crosses the eMMC bus once: when it is programmed
	// at provisioning (see OpenAnchor). It depends on the device only (the
	// bootloader needs it too, to read the minimum release version): the
	// eMMC takes its key once, so one bound to the release key would leave
	// the partition unusable under any later release key for ever. Another
	// release key is kept off the partition by the owner of the minimum
	// version block instead (ReadMinVersion, RaiseMinVersion).
	RPMB [32]byte
}

// ReleaseKeyID names the release key of the log a booted OS was checked
// against: a labelled SHA-256 of the key's name and public key
// (bootcheck.ReleaseKeyID). The zero ID is an OS that no bootloader checked (started directly, as QEMU's
// -kernel does).
type ReleaseKeyID [32]byte

// Derivation labels (HKDF-SHA256, 32 bytes). The store's key of an OS
// checked against a release key has that key's ID as HKDF salt and its own
// label; an unchecked OS keeps the original derivation (no salt), so the
// vaults of directly booted development images still open.
const (
	labelStore         = "coffer/os store sealing v1"
	labelStoreReleased = "coffer/os store sealing v2 release-key"
	labelRPMB          = "coffer/os rpmb mac v1"
)

// DeriveKeys derives the per-purpose keys from the device-unique key. The
// store's sealing key is diversified by the release key's identity: an OS
// signed by another release key (or not checked at all) derives another
// key and does not open the vault's records (that binds honest software:
// an OS that runs holds the device key; no bootloader runs another release
// key's OS on a device whose minimum version block this key owns). The
// RPMB key is not diversified (see Keys.RPMB).
func DeriveKeys(deviceKey *[32]byte, release ReleaseKeyID) Keys {
	k := Keys{RPMB: DeriveRPMBKey(deviceKey)}
	if release == (ReleaseKeyID{}) {
		k.Store = derive(deviceKey, nil, labelStore)
	} else {
		k.Store = derive(deviceKey, release[:], labelStoreReleased)
	}
	return k
}

// DeriveRPMBKey derives only the RPMB key (the bootloader's need).
func DeriveRPMBKey(deviceKey *[32]byte) [32]byte {
	return derive(deviceKey, nil, labelRPMB)
}

// Wipe clears the keys.
func (k *Keys) Wipe() {
	clear(k.Store[:])
	clear(k.RPMB[:])
}

func derive(key *[32]byte, salt []byte, label string) [32]byte {
	b, err := hkdf.Key(sha256.New, key[:], salt, label, 32)
	if err != nil {
		panic(err) // only for invalid lengths
	}
	out := [32]byte(b)
	clear(b)
	return out
}
