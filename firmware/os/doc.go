// Command os is Coffer's Trusted OS: a GoTEE monitor in Secure World system
// mode that owns the hardware and runs the Trusted Applet (applet/ta), which
// holds the vault, in Secure World user mode.
//
// It embeds the applet's ELF image at build time (applet.elf in this folder,
// written by `make firmware`), loads it into the applet's memory region
// (board/layout.go), and runs it. The applet asks for everything through the
// calls of firmware/api; the OS answers them from the board (board/): the
// record store's sectors, its anchor, randomness, the store's sealing key,
// and the protocol requests that arrive on the board's transport
// (protocol.ServeStream, each frame's payload relayed to the applet and its
// reply framed back).
//
// The OS derives one key per purpose from the board's device key
// (tos.DeriveKeys) and gives the applet only the store's. It owns the RPMB
// partition and its key (tos.OpenAnchor): at the device's first boot, with
// secure boot closed, it blows an OTP fuse and then programs the key, the
// one time the key crosses the eMMC bus; on every later boot a partition
// without the key, or any RPMB failure, is tampering, and the applet is
// told so (api.ETAMPERED) for every anchor access.
//
// If the applet faults, panics or exits, the OS answers the requests it had
// taken with an error, wipes its memory, and starts it again from the same
// image; the store's committed state is on the device, so nothing committed
// is lost, and what lived only in the applet's RAM (pending logins, open
// sessions, final-attempt secrets) is forgotten, as at a reboot.
//
// Build it with firmware/firmware.mk (`make firmware BOARD=qemu`), which
// sets GOOS=tamago, the board tag and the link address.
package main
