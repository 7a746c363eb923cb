// Package atomicfile writes a file so that a crash or a power cut leaves
// either the old file or the whole new one, never a torn one: the software
// vault's state files and the client's configuration both depend on it.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"
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
// fs.ErrExist if it does), with mode perm exactly (the umask does not
// apply): a temporary file in the same folder, synced, then linked as path,
// which fails rather than replace a file (a symbolic link planted at path
// included); the temporary name is removed and the folder synced, so that
// the content is left under path alone. A crash leaves path whole or
// absent, never torn, so that a rerun after it is not refused by half a
// file (a crash before the link can leave the whole temporary file, named
// with a dot in front).
//
// On a file system without hard links (FAT, as on a USB stick one exports
// a key to, and some FUSE mounts) it reserves path, created exclusively and
// empty, and renames the temporary file over it: still refused if path
// exists, still one copy of the content; a crash between the two leaves
// path empty.
func Create(path string, b []byte, perm os.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	}
	tmp, err := writeTemp(path, b, perm)
	if err != nil {
		return err
	}
	err = link(tmp, path)
	if err != nil && !errors.Is(err, fs.ErrExist) && (errors.Is(err, fs.ErrPermission) || errors.Is(err, errors.ErrUnsupported)) {
		return renameOverReserved(tmp, path, perm)
	}
	if err != nil {
		os.Remove(tmp)
		if le := (*os.LinkError)(nil); errors.As(err, &le) {
			err = le.Err // the temporary name is nobody's concern
		}
		return &fs.PathError{Op: "create", Path: path, Err: err}
	}
	// Before the folder's sync, which then makes the removal durable
	// with the link: no second name for the content survives a crash.
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("%s written, but its temporary copy %s remains (remove it): %w", path, tmp, err)
	}
	return SyncDir(filepath.Dir(path))
}

// link is os.Link; tests replace it to play a file system without links.
var link = os.Link

// renameOverReserved ends Create where links cannot be made.
func renameOverReserved(tmp, path string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		os.Remove(path)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes b, synced, to a new temporary file beside path (named
// after it, with a dot in front) and returns its name.
func writeTemp(path string, b []byte, perm os.FileMode) (string, error) {
	// At most the name's first 32 bytes (whole characters): a temporary
	// name longer than the folder allows would refuse a path that fits.
	base := filepath.Base(path)
	if n := 32; len(base) > n {
		for n > 0 && !utf8.RuneStart(base[n]) {
			n--
		}
		base = base[:n]
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+base+".*")
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
