// Package usbarmory is the USB armory Mk II board (NXP i.MX6ULZ/ULL, 512 MiB).
//
//   - Transport: USB CDC-ACM (a serial port on the host: /dev/ttyACM*), on
//     the USB device controller USB1. NOT YET TESTED ON HARDWARE.
//   - Storage: the internal eMMC (uSDHC2): a window of sectors for the
//     record store, and the eMMC's RPMB partition for its anchor.
//   - RPMB key fuse: bit 0 of OCOTP_GP2 (bank 4, word 7), blown by the OS
//     before it programs the RPMB key at provisioning (consts.go). NOT YET
//     TESTED ON HARDWARE; blowing it is irreversible.
//   - Device key: derived by the DCP (i.MX6ULL/ULZ) or CAAM (i.MX6UL) from
//     the chip's OTPMK. Until secure boot (HAB) is closed that key is a test
//     key shared by every chip, so the board refuses to give one unless
//     snvs.Available() (the SNVS is in a secure state). Secure boot counts
//     as closed when the SEC_CONFIG[1] fuse is blown and the SNVS is in a
//     secure state; only then does the OS program the RPMB key.
//   - Randomness: the SoC's TRNG through tamago's crypto/rand.
//
// The hardware code needs `//go:build tamago && board_usbarmory`.
package usbarmory
