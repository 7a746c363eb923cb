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
	tmp, err := writeTemp(path, b, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // fails harmlessly once renamed
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Create writes b to path, which must not exist yet (an error wrapping
// fs.ErrExist if it does), with mode perm: a temporary file in the same
// folder, synced, then linked as path, which fails rather than replace a
// file, and the folder synced. A crash leaves path whole or absent, never
// torn, so that a rerun after it is not refused by half a file.
func Create(path string, b []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, b, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes b, synced, to a new temporary file beside path (named
// after it, with a dot in front) and returns its name.
func writeTemp(path string, b []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
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
