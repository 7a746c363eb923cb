//go:build tamago && board_qemu && arm

package qemu

import (
	"fmt"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/internal/storage"
)

var _ board.Booter = (*qemuBoard)(nil)

func (*qemuBoard) ReleaseBoard() string { return "qemu" }

// BootImage reads OSImageFile and OSProofFile from QEMU's working directory
// through semihosting.
func (*qemuBoard) BootImage() (osELF, proof []byte, err error) {
	if osELF, err = readHostFile(OSImageFile, board.MaxOSImage); err != nil {
		return nil, nil, err
	}
	if proof, err = readHostFile(OSProofFile, board.MaxProofSize); err != nil {
		return nil, nil, err
	}
	return osELF, proof, nil
}

func readHostFile(name string, max int64) ([]byte, error) {
	f, err := shOpen(name, modeRB)
	if err != nil {
		return nil, err
	}
	defer f.close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("qemu: %s is %d bytes, more than %d", name, n, max)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("qemu: reading %s: %w", name, err)
	}
	return b, nil
}

func (*qemuBoard) RPMB() (storage.RPMBTransport, error) {
	af, err := openOrCreate(AnchorFile)
	if err != nil {
		return nil, err
	}
	rpmb, err := OpenEmulatedRPMB(af)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s: %w", AnchorFile, err)
	}
	return rpmb, nil
}
