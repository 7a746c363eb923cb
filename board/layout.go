package board

// Memory layout of the supported boards: i.MX6UL/ULL/ULZ with 512 MiB of DDR
// at 0x80000000 (USB armory Mk II; QEMU's mcimx6ul-evk started with -m 512M).
//
//	0x80000000  Trusted OS: code, data, heap, stack (256 MiB)
//	0x90000000  Trusted OS DMA buffers (4 MiB; USB, uSDHC)
//	0x90400000  boot info: what the bootloader measured, for the OS (1 MiB)
//	0x90500000  unused
//	0x91000000  bootloader (firmware/boot): code, data, heap, stack (112 MiB)
//	0x98000000  Trusted Applet: code, data, heap, stack (128 MiB)
//	0xa0000000  end of DDR
//
// The images are linked at Start+TextOffset (firmware/firmware.mk passes the
// same numbers to the linker; a test checks they agree). The applet region
// is not part of the OS's Go heap, and the OS maps it for user mode only
// while the applet runs.
//
// The bootloader runs before the OS, from memory the OS never uses, so that
// it can load the OS's segments at their link addresses while it runs; it
// leaves one block for the OS at BootInfoStart (firmware/tos BootInfo). Its
// region is that large because a Go 1.26 program's .bss holds a 32 MiB
// buffer (the FIPS entropy source's) and the bootloader reads the whole OS
// image (about 13 MB) into its heap before it checks and loads it.
const (
	RAMStart = 0x80000000
	RAMSize  = 0x20000000

	OSStart = 0x80000000
	OSSize  = 0x10000000

	DMAStart = 0x90000000
	DMASize  = 0x00400000

	BootInfoStart = 0x90400000
	BootInfoSize  = 0x00100000

	BootStart = 0x91000000
	BootSize  = 0x07000000

	AppletStart = 0x98000000
	AppletSize  = 0x08000000

	// TextOffset is where code starts in a region: tamago reserves the
	// first 64 KiB for exception vectors and page tables.
	TextOffset = 0x10000

	OSText     = OSStart + TextOffset
	BootText   = BootStart + TextOffset
	AppletText = AppletStart + TextOffset
)

// Region is a span of physical memory.
type Region struct {
	Start, Size uint64
}

// End is the first address after r.
func (r Region) End() uint64 { return r.Start + r.Size }

// Overlaps reports whether r and o share an address.
func (r Region) Overlaps(o Region) bool { return r.Start < o.End() && o.Start < r.End() }

// Layout lists the regions, for checks and logs.
func Layout() map[string]Region {
	return map[string]Region{
		"os":         {OSStart, OSSize},
		"dma":        {DMAStart, DMASize},
		"boot-info":  {BootInfoStart, BootInfoSize},
		"bootloader": {BootStart, BootSize},
		"applet":     {AppletStart, AppletSize},
	}
}
