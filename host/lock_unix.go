//go:build unix

package host

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on path (created if missing),
// so that two `cofferd account` commands never interleave their updates.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

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
