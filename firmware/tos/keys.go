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
	// key the applet is given.
	Store [32]byte
	// RPMB authenticates every RPMB frame. It stays in the OS, which owns
	// the partition, and crosses the eMMC bus once: when it is programmed
	// at provisioning (see OpenAnchor).
	RPMB [32]byte
}

// Derivation labels (HKDF-SHA256, no salt, 32 bytes).
const (
	labelStore = "coffer/os store sealing v1"
	labelRPMB  = "coffer/os rpmb mac v1"
)

// DeriveKeys derives the per-purpose keys from the device-unique key.
func DeriveKeys(deviceKey *[32]byte) Keys {
	return Keys{Store: derive(deviceKey, labelStore), RPMB: derive(deviceKey, labelRPMB)}
}

// Wipe clears the keys.
func (k *Keys) Wipe() {
	clear(k.Store[:])
	clear(k.RPMB[:])
}

func derive(key *[32]byte, label string) [32]byte {
	b, err := hkdf.Key(sha256.New, key[:], nil, label, 32)
	if err != nil {
		panic(err) // only for invalid lengths
	}
	out := [32]byte(b)
	clear(b)
	return out
}
