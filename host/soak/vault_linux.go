//go:build linux

package soak

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
)

// sample reads the vault process's memory and CPU time; zero in-process.
func (v *vaultRunner) sample() procSample {
	pid := v.pid()
	if pid == 0 {
		return procSample{}
	}
	var s procSample
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				if f[0] == "VmRSS:" {
					s.rss = kb << 10
				} else {
					s.peak = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 12th and 13th, in clock ticks (100 a second on
		// Linux, USER_HZ).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				s.cpu = time.Duration(u+st) * 10 * time.Millisecond
			}
		}
	}
	return s
}

// storeBytes is the disk space the vault's store file takes (it is sparse).
func (v *vaultRunner) storeBytes() int64 {
	fi, err := os.Stat(filepath.Join(v.dir, softvault.StoreFile))
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
