//go:build tamago && arm

package main

import (
	"github.com/usbarmory/tamago/dma"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/firmware/tos"
)

// takeBootInfo reads the block the bootloader left at board.BootInfoStart
// and wipes it, so that nothing later (a restart of the OS without the
// bootloader) takes it for its own. tos.ErrNoBootInfo: no bootloader ran.
func takeBootInfo() (*tos.BootInfo, error) {
	r, err := dma.NewRegion(board.BootInfoStart, tos.BootInfoSize, false)
	if err != nil {
		return nil, err
	}
	_, mem := r.Reserve(tos.BootInfoSize, 0)
	info, err := tos.ParseBootInfo(mem)
	clear(mem)
	return info, err
}
