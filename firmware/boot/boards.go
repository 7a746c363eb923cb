//go:build tamago

package main

// The boards the bootloader can be built for; the board_NAME build tag
// picks one (the others compile to nothing).
import (
	_ "github.com/cofferhsm/coffer/board/qemu"
	_ "github.com/cofferhsm/coffer/board/usbarmory"
)
