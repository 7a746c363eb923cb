//go:build tamago && arm

package main

import (
	_ "unsafe"

	"github.com/cofferhsm/coffer/board"
)

// The bootloader's Go runtime owns only its region (built with the
// linkramstart and linkramsize tags), above everything the OS uses, so that
// it can write the OS's segments where the OS is linked.

//go:linkname ramStart runtime/goos.RamStart
var ramStart uint32 = board.BootStart

//go:linkname ramSize runtime/goos.RamSize
var ramSize uint32 = board.BootSize
