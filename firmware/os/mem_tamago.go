//go:build tamago && arm

package main

import (
	_ "unsafe"

	"github.com/cofferhsm/coffer/board"
)

// The OS's Go runtime owns only its region (built with the linkramsize tag,
// which drops tamago's default of all 512 MiB): the DMA buffers and the
// applet live above it.

//go:linkname ramSize runtime/goos.RamSize
var ramSize uint32 = board.OSSize
