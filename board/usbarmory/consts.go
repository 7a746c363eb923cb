package usbarmory

// The record store's window on the internal eMMC: 256 MiB from 1 GiB on,
// clear of the boot area and of a partition table at the start. A device used
// as a vault holds nothing else; the firmware image itself boots from the
// eMMC's start (offset 1 KiB) or from a microSD card.
const (
	StoreFirstSector = 1 << 30 / 512
	StoreSectors     = 256 << 20 / 512
)

// MinAnchorMillis spares the RPMB write counter (32 bits, and each write
// wears the partition): commits arriving within it join the next anchor
// write.
const MinAnchorMillis = 100

// Device key derivation inputs: diversifiers for the DCP (AES-128-CBC of a
// 16-byte block under the OTPMK, two blocks for 32 bytes) and the CAAM
// (AES-256-CMAC diversification).
const (
	dcpDiversifierA = "coffer seal v1 a"
	dcpDiversifierB = "coffer seal v1 b"
	caamDiversifier = "coffer/store sealing key v1"
)

// The USB ids the vault presents (CDC-ACM). 1209:2702 is the pid.codes id
// of the USB armory, which tamago also uses by default; cofferd's
// `-vault serial:auto` looks for it (transport.DefaultUSBID in protocol/transport), and a test keeps the
// two equal.
const (
	USBVendorID  = 0x1209
	USBProductID = 0x2702
)

// The OTP fuse bit the OS blows before it programs the RPMB key: bit 0 of
// OCOTP_GP2 (bank 4, word 7; shadow register at OCOTP base + 0x670; fuse
// address 0x4F0), a general-purpose fuse the i.MX6UL/ULL/ULZ reference
// manuals leave to the user, which neither the boot ROM, tamago nor the USB
// armory use. Once it is blown, an RPMB partition that says it has no key is
// taken for tampering, and the key is never sent again.
const (
	RPMBFuseBank = 4
	RPMBFuseWord = 7
	RPMBFuseBit  = 0
)

// SEC_CONFIG[1] (OCOTP_CFG5, bank 0 word 6, bit 1): blown when HAB is
// closed.
const (
	secConfigBank = 0
	secConfigWord = 6
	secConfigBit  = 1
)
