// Command os is Coffer's Trusted OS: a GoTEE monitor in Secure World system
// mode that owns the hardware and runs the Trusted Applet (applet/ta), which
// holds the vault, in Secure World user mode.
//
// It embeds the applet's ELF image at build time (applet.elf in this folder,
// written by `make firmware`), loads it into the applet's memory region
// (board/layout.go), and runs it. The applet asks for everything through the
// calls of firmware/api; the OS answers them from the board (board/): the
// record store's sectors and RPMB frames, randomness, the sealing key, and
// the protocol requests that arrive on the board's transport
// (protocol.ServeStream, each frame's payload relayed to the applet and its
// reply framed back).
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
