// Package board describes what differs between the boards Coffer's firmware
// runs on, so that the Trusted OS (firmware/os) and the Trusted Applet
// (applet/ta) are written once:
//
//   - the memory layout (layout.go): where the OS, its DMA buffers and the
//     applet live in RAM, shared by both images and by the build;
//   - the Board interface: the transport to the host, the record store's
//     block device and RPMB partition, the fuse that records the RPMB key's
//     programming, the device-unique key, whether secure boot is closed,
//     the randomness the applet is given, and whether any of that is
//     insecure.
//
// Each board is one folder below this one (board/qemu, board/usbarmory).
// Its hardware code carries `//go:build tamago && board_NAME` and registers
// the board with Register from an init function; the firmware is built with
// exactly one board_NAME tag. Its portable parts (emulators, formats,
// constants) build and are tested everywhere.
//
// To add a board: copy a board folder, adapt it, add its blank import to
// firmware/os/boards.go and a BOARD value to firmware/firmware.mk.
package board
