//go:build linux

package store

import (
	"os"
	"syscall"

	"github.com/cofferhsm/coffer/internal/storage"
)

// preallocate gives the benchmark image at path real blocks, so that fsync
// does not also commit the host file system's block allocations (eMMC has
// none).
func preallocate(path string, sectors uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return syscall.Fallocate(int(f.Fd()), 0, 0, int64(sectors*storage.SectorSize))
}
