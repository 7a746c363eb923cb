//go:build unix

package host

import (
	"os"
	"syscall"
)

// keepOwner gives the new file the owner of the file it replaces, when this
// process may (it runs as root) and the owners differ.
func keepOwner(f *os.File, oldPath string) {
	st, err := os.Stat(oldPath)
	if err != nil {
		return
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 || (int(sys.Uid) == os.Geteuid() && int(sys.Gid) == os.Getegid()) {
		return
	}
	f.Chown(int(sys.Uid), int(sys.Gid))
}
