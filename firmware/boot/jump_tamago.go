//go:build tamago && arm

package main

import "github.com/usbarmory/tamago/soc/nxp/imx6ul"

// jumpToOS is defined in jump_arm.s.
func jumpToOS(entry uint32)

// startOS starts the loaded OS as a kernel expects to be started: the
// loaded image and the boot info cleaned from the data cache to RAM, then,
// with interrupts masked, MMU and caches off, the instruction cache, branch
// predictor and TLBs invalidated, a jump to its entry point (r0 = 0). The
// OS's runtime sets up its own MMU and caches from scratch.
//
// Nothing the bootloader writes after the clean matters to the OS: only its
// own stack, in its own region.
func startOS(entry uint32) {
	imx6ul.ARM.FlushDataCache()
	jumpToOS(entry)
}
