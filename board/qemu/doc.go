// Package qemu is the board QEMU emulates with -machine mcimx6ul-evk
// -cpu cortex-a7 -m 512M: an i.MX6UL without USB device controller, DCP,
// CAAM or RPMB, so everything here is INSECURE and says so.
//
//   - Transport: UART1 (QEMU's first -serial), expose it with
//     -serial unix:PATH,server,nowait; the console is UART2 (second -serial),
//     as on the USB armory.
//   - Storage: two host files reached through ARM semihosting from the
//     Trusted OS (QEMU needs -semihosting-config enable=on,userspace=off,
//     and opens them relative to its working directory): StoreFile, the
//     record store's block device, and AnchorFile, an emulated RPMB
//     partition (OpenEmulatedRPMB: the store's emulator, in the software
//     vault's file format). The host controls both files, so the vault
//     detects a rollback of the store, never of store and anchor together.
//   - RPMB key fuse: a fake, the host file FuseFile (FileFuse), empty until
//     the OS blows it at the emulated device's first boot. There is no
//     secure boot; the OS provisions the emulated RPMB anyway only because
//     this board is emulated and flagged insecure.
//   - Device key: a fixed development key, known to anyone who reads this
//     source; the identity bundle is flagged insecure and self-signed with
//     a development provisioning key (DevProvisioningSeed).
//   - Randomness: the host's /dev/urandom, read through semihosting.
//
// The file formats and the RPMB emulation are portable and tested anywhere;
// the semihosting and UART glue needs `//go:build tamago && board_qemu`.
package qemu
