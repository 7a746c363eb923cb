package qemu

import "crypto/sha256"

// Host files, relative to QEMU's working directory.
const (
	StoreFile  = "coffer-store.img"
	AnchorFile = "coffer-anchor.rpmb"
	// FuseFile is the fake OTP fuse that records that the emulated RPMB
	// partition's key was programmed (FileFuse).
	FuseFile = "coffer-otp.fuse"
)

// StoreSectors sizes a new store file: 32 MiB of 512-byte sectors, sparse.
const StoreSectors = 32 << 20 / 512

// MinAnchorMillis: the emulated RPMB has no write counter to spare.
const MinAnchorMillis = 0

// DevSealingKey is the emulated device-unique key. It is public: anyone with
// the store file can unseal it.
var DevSealingKey = sha256.Sum256([]byte("coffer/qemu development sealing key (INSECURE) v1"))

// DevProvisioningSeed is the Ed25519 seed of the development provisioning
// key an emulated vault signs its own identity with. Clients that pin its
// public key accept only vaults flagged insecure (and only with --insecure).
var DevProvisioningSeed = sha256.Sum256([]byte("coffer/qemu development provisioning key (INSECURE) v1"))

// The boot chain's files (firmware/boot), next to the others: the OS image
// the bootloader checks and starts, and its proof bundle
// (releaselog.Proof, CBOR).
const (
	OSImageFile = "coffer-os.elf"
	OSProofFile = "coffer-os.proof"
)
