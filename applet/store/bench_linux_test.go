//go:build linux

package store

import "syscall"

// preallocate gives the benchmark image real blocks, so that fsync does not
// also commit the host file system's block allocations (eMMC has none).
func preallocate(d *FileDevice) error {
	return syscall.Fallocate(int(d.f.Fd()), 0, 0, int64(d.sectors*SectorSize))
}
