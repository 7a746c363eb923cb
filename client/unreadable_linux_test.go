package client

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A file or folder that cannot be read is left out and named, not the
// end of the backup. Root reads files of mode 000, so as root the backup
// runs with the effective uid of nobody (the saved uid stays root, to get
// it back).
func TestBackupLeavesOutUnreadable(t *testing.T) {
	_, _, rec := testKey(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		os.Chmod(d, 0o755)
	}
	src := filepath.Join(base, "home")
	os.MkdirAll(filepath.Join(src, "closed"), 0o755)
	writeFile(t, filepath.Join(src, "open"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(src, "secret"), []byte("x"), 0o000)
	writeFile(t, filepath.Join(src, "closed/inside"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(src, "closed"), 0o000)
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "closed"), 0o755) })

	var st *BackupStats
	var err error
	asNobody(t, func() { st, err = WriteBackup(io.Discard, rec, []string{src}, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 2 || st.Files != 1 || st.Dirs != 2 {
		t.Fatalf("%+v", st)
	}
	for _, lo := range st.LeftOut {
		if !strings.Contains(lo.Reason, "permission denied") {
			t.Errorf("%s: %s", lo.Path, lo.Reason)
		}
	}
}

func asNobody(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		f()
		return
	}
	if err := syscall.Setresuid(-1, 65534, 0); err != nil {
		t.Skipf("SKIPPED: cannot drop to uid 65534: %v", err)
	}
	defer func() {
		if err := syscall.Setresuid(-1, 0, -1); err != nil {
			panic(err) // the rest of the run would not be root
		}
	}()
	f()
}
