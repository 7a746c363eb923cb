// Package atomicfile writes a file so that a crash or a power cut leaves
// either the old file or the whole new one, never a torn one: the software
// vault's state files and the client's configuration both depend on it.
package atomicfile

import (
	"errors"
	"io/fs"
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
// file (a symbolic link planted at path included), and the folder synced.
// A crash leaves path whole or absent, never torn, so that a rerun after it
// is not refused by half a file.
//
// On a file system without hard links (FAT, as on a USB stick one exports
// a key to, and some FUSE mounts) it writes path in place instead, created
// exclusively and removed if the write fails: refused if it exists, whole
// unless the machine stops during the write.
func Create(path string, b []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, b, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = link(tmp, path)
	if err != nil && !errors.Is(err, fs.ErrExist) && (errors.Is(err, fs.ErrPermission) || errors.Is(err, errors.ErrUnsupported)) {
		return createInPlace(path, b, perm)
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// link is os.Link; tests replace it to play a file system without links.
var link = os.Link

// createInPlace is Create where links cannot be made.
func createInPlace(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
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
