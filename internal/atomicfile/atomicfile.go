// Package atomicfile writes a file so that a crash or a power cut leaves
// either the old file or the whole new one, never a torn one: the software
// vault's state files and the client's configuration both depend on it.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to path, mode 0600: a temporary file in the same folder,
// synced, renamed over path, and the folder synced so that the rename is
// durable too.
func Write(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the folder's entries durable: a rename or a removal in it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
