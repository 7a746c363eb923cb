package api

import (
	"bytes"
	"encoding/binary"
)

// Config is what the OS tells the applet at start: the keys and settings it
// may not choose itself. It travels once per applet start (OpConfig).
type Config struct {
	// Flags describe the platform: FlagInsecure is set on any build whose
	// secrets are not protected by hardware (emulation, development keys,
	// secure boot not closed); the vault puts it in its identity bundle.
	Flags uint32
	// MaxLimit is the vault-wide maximum attempt limit.
	MaxLimit uint32
	// Sectors is the size of the record store's block device.
	Sectors uint64
	// MinAnchorMillis is the least time between anchor writes (RPMB wear).
	MinAnchorMillis uint32
	// Boot counts applet starts since the OS booted (1 for the first).
	Boot uint32
	// StoreKey is the key the record store is sealed under: derived by the
	// OS from the device-unique key for this one purpose (firmware/tos
	// DeriveKeys). The device-unique key itself, and the RPMB key, never
	// reach the applet.
	StoreKey [32]byte
	// FirmwareHash is the measurement of the running firmware: the OS
	// image's SHA-256 as the bootloader measured it (a release entry's
	// firmware hash); when the OS was started without the bootloader, the
	// applet image's, which the OS measured itself. The vault puts it in
	// its identity and signs it in every status.
	FirmwareHash [32]byte
	// DevProvisioningSeed is an Ed25519 seed with which an emulated vault
	// signs its own identity bundle (FlagDevProvisioning only).
	DevProvisioningSeed [32]byte
	// Board names the board, for the identity bundle and logs.
	Board string
}

// Config flags.
const (
	FlagInsecure        = 1 << 0
	FlagEmulated        = 1 << 1
	FlagDevProvisioning = 1 << 2
)

// ConfigSize is the encoded size of a Config.
const ConfigSize = 256

const (
	configMagic   = "CCFG"
	configVersion = 2 // 2: StoreKey replaces the raw sealing key
	maxBoardName  = 32
)

// Encode returns the fixed-size encoding of c. A board name longer than 32
// bytes is cut.
func (c *Config) Encode() []byte {
	b := make([]byte, ConfigSize)
	copy(b, configMagic)
	binary.BigEndian.PutUint32(b[4:], configVersion)
	binary.BigEndian.PutUint32(b[8:], c.Flags)
	binary.BigEndian.PutUint32(b[12:], c.MaxLimit)
	binary.BigEndian.PutUint64(b[16:], c.Sectors)
	binary.BigEndian.PutUint32(b[24:], c.MinAnchorMillis)
	binary.BigEndian.PutUint32(b[28:], c.Boot)
	copy(b[32:64], c.StoreKey[:])
	copy(b[64:96], c.FirmwareHash[:])
	copy(b[96:128], c.DevProvisioningSeed[:])
	name := c.Board
	if len(name) > maxBoardName {
		name = name[:maxBoardName]
	}
	copy(b[128:160], name)
	return b
}

// DecodeConfig parses an encoded Config.
func DecodeConfig(b []byte) (*Config, error) {
	if len(b) != ConfigSize || string(b[:4]) != configMagic ||
		binary.BigEndian.Uint32(b[4:]) != configVersion {
		return nil, ErrConfig
	}
	for _, x := range b[160:] {
		if x != 0 {
			return nil, ErrConfig
		}
	}
	c := &Config{
		Flags:           binary.BigEndian.Uint32(b[8:]),
		MaxLimit:        binary.BigEndian.Uint32(b[12:]),
		Sectors:         binary.BigEndian.Uint64(b[16:]),
		MinAnchorMillis: binary.BigEndian.Uint32(b[24:]),
		Boot:            binary.BigEndian.Uint32(b[28:]),
	}
	if c.Flags&^(FlagInsecure|FlagEmulated|FlagDevProvisioning) != 0 {
		return nil, ErrConfig
	}
	if c.Flags&FlagDevProvisioning != 0 && c.Flags&FlagInsecure == 0 {
		return nil, ErrConfig // a development key is insecure by definition
	}
	copy(c.StoreKey[:], b[32:64])
	copy(c.FirmwareHash[:], b[64:96])
	copy(c.DevProvisioningSeed[:], b[96:128])
	name := b[128:160]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		if !allZero(name[i:]) {
			return nil, ErrConfig
		}
		name = name[:i]
	}
	c.Board = string(name)
	return c, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Wipe clears the keys in c.
func (c *Config) Wipe() {
	clear(c.StoreKey[:])
	clear(c.DevProvisioningSeed[:])
}
