package client

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
)

// Restore errors; the error returned wraps one of them with details.
var (
	// ErrWrongKey: the backup was not encrypted to this key.
	ErrWrongKey = errors.New("this backup was not made with this key (no age identity matched)")
	// ErrDamaged: the encrypted file failed authentication or is cut
	// short; nothing was restored.
	ErrDamaged = errors.New("the backup file is damaged, cut short or was altered")
	// ErrBadArchive: the decrypted archive breaks SPEC.md's rules (an
	// unsafe path, link or entry type); nothing was restored.
	ErrBadArchive = errors.New("the backup's archive is not acceptable")
	// ErrTargetExists: something of the same name as a top-level entry is
	// already in the restore folder, and Force was not given.
	ErrTargetExists = errors.New("the restore would overwrite existing files")
)

// RestoreOptions tune RestoreBackup. The zero value is fine.
type RestoreOptions struct {
	// Force replaces existing files or folders named like the backup's
	// top-level entries (each is replaced as a whole).
	Force bool
}

// RestoreStats says what a restore put in place.
type RestoreStats struct {
	Files, Dirs, Symlinks, Links int
	Bytes                        int64
	Top                          []string // the top-level entries, in archive order, raw: print them with QuoteName
}

// RestoreBackup decrypts the age file r with identity and restores its
// archive under dir (created if missing).
//
// Everything is first extracted into a new temporary folder inside dir.
// Only once the whole file has been read and authenticated — age checks
// every 64 KiB chunk and the end of the stream, so an error before the end
// means nothing is presented as complete — and every entry obeyed SPEC.md's
// path rules, are the top-level entries moved into place. On any error the
// temporary folder is removed and dir is left as it was.
func RestoreBackup(r io.Reader, identity age.Identity, dir string, opts *RestoreOptions) (stats *RestoreStats, err error) {
	if opts == nil {
		opts = &RestoreOptions{}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, nameErr(err)
	}
	created, err := mkdirAllTracked(dir)
	defer func() {
		if err != nil {
			for _, d := range slices.Backward(created) {
				os.Remove(d)
			}
		}
	}()
	if err != nil {
		return nil, nameErr(err)
	}
	tmp, err := os.MkdirTemp(dir, ".coffer-restore-*")
	if err != nil {
		return nil, nameErr(err)
	}
	defer removeAll(tmp)

	ar, err := age.Decrypt(bufio.NewReaderSize(r, 64<<10), identity)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("client: %w", ErrWrongKey)
		}
		if interrupted(err) {
			return nil, fmt.Errorf("client: restore interrupted: %w", err)
		}
		return nil, fmt.Errorf("client: %w: %v", ErrDamaged, err)
	}
	src := &authReader{r: ar}
	x, err := extractInto(tmp, src)
	if err == nil {
		defer x.root.Close()
	}
	if src.err != nil && interrupted(src.err) {
		return nil, fmt.Errorf("client: restore interrupted; nothing was restored: %w", src.err)
	}
	if src.err != nil {
		return nil, fmt.Errorf("client: %w (after %d bytes of archive): %v; nothing was restored", ErrDamaged, src.n, src.err)
	}
	if err != nil {
		return nil, err
	}
	exist, err := checkTargets(tmp, dir, x.stats.Top, opts.Force)
	if err != nil {
		return nil, err
	}
	if err := x.finish(); err != nil {
		return nil, nameErr(err)
	}
	if err := moveIntoPlace(tmp, dir, x.stats.Top, exist); err != nil {
		return nil, nameErr(err)
	}
	return &x.stats, nil
}

// removeAll is os.RemoveAll that also empties read-only folders.
func removeAll(dir string) error {
	if os.RemoveAll(dir) == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

func interrupted(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// authReader remembers an error of the decrypting reader, so that a
// tampered or truncated file is reported as such whatever the tar reader
// makes of it.
type authReader struct {
	r   io.Reader
	n   int64
	err error
}

func (a *authReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	a.n += int64(n)
	if err != nil && err != io.EOF {
		a.err = err
	}
	return n, err
}

// mkdirAllTracked creates dir and its missing parents, returning those it
// created, outermost first.
func mkdirAllTracked(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	slices.Reverse(missing)
	var created []string
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil {
			return created, err
		}
		created = append(created, d)
	}
	return created, nil
}

type entryKind byte

const (
	kindDir entryKind = iota + 1
	kindFile
	kindSymlink
	kindLink
)

type dirMeta struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

type extractor struct {
	root  *os.Root
	kinds map[string]entryKind
	dirs  []dirMeta
	stats RestoreStats
}

func badArchive(name, format string, args ...any) error {
	return fmt.Errorf("client: %w: entry %q: %s; nothing was restored", ErrBadArchive, name, fmt.Sprintf(format, args...))
}

// extractInto extracts the archive r into dir. On success the caller
// closes x.root, after finish.
func extractInto(dir string, r io.Reader) (x *extractor, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nameErr(err)
	}
	defer func() {
		if err != nil {
			root.Close()
		}
	}()
	x = &extractor{root: root, kinds: map[string]entryKind{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("client: %w: %v; nothing was restored", ErrBadArchive, err)
		}
		if err := x.entry(h, tr); err != nil {
			return nil, nameErr(err)
		}
	}
	// Read to the very end: only there does age authenticate the last
	// chunk. A tar writer may pad with zeros; anything else is refused.
	if err := drainZeros(r); err != nil {
		return nil, err
	}
	return x, nil
}

// finish gives folders their modes and times: last, deepest first, so that
// a read-only folder was still writable while it was filled.
func (x *extractor) finish() error {
	for _, d := range slices.Backward(x.dirs) {
		if err := x.root.Chmod(d.name, d.mode); err != nil {
			return err
		}
		if err := x.root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func drainZeros(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return fmt.Errorf("client: %w: data after the end of the archive; nothing was restored", ErrBadArchive)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (x *extractor) entry(h *tar.Header, content io.Reader) error {
	name := h.Name
	if h.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if err := checkEntryName(name); err != nil {
		return badArchive(h.Name, "%v", err)
	}
	if _, dup := x.kinds[name]; dup {
		return badArchive(name, "appears twice")
	}
	if parent := path.Dir(name); parent != "." && x.kinds[parent] != kindDir {
		// Also what stops a file written through a symlink or into a
		// folder that is not the archive's own.
		return badArchive(name, "its folder %q is not an earlier folder entry of the archive", parent)
	}
	for k := range h.PAXRecords {
		// archive/tar expands GNU sparse files itself: a few bytes could
		// declare terabytes of holes.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return badArchive(name, "sparse files are not allowed")
		}
	}
	mode := fs.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirMeta{name, mode, h.ModTime})
		x.kinds[name] = kindDir
		x.stats.Dirs++
	case tar.TypeReg:
		if err := x.file(name, mode, h, content); err != nil {
			return err
		}
		x.kinds[name] = kindFile
		x.stats.Files++
	case tar.TypeSymlink:
		if err := checkSymlink(name, h.Linkname); err != nil {
			return badArchive(name, "symlink to %q: %v", h.Linkname, err)
		}
		if err := x.root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		x.kinds[name] = kindSymlink
		x.stats.Symlinks++
	case tar.TypeLink:
		if err := checkEntryName(h.Linkname); err != nil {
			return badArchive(name, "hard link to %q: %v", h.Linkname, err)
		}
		if x.kinds[h.Linkname] != kindFile {
			return badArchive(name, "hard link to %q, which is not an earlier file of the archive", h.Linkname)
		}
		if err := x.root.Link(h.Linkname, name); err != nil {
			return err
		}
		x.kinds[name] = kindLink
		x.stats.Links++
	default:
		return badArchive(name, "entry type %q is not allowed (only files, folders, symlinks and hard links)", h.Typeflag)
	}
	if !strings.Contains(name, "/") {
		x.stats.Top = append(x.stats.Top, name)
	}
	return nil
}

func (x *extractor) file(name string, mode fs.FileMode, h *tar.Header, content io.Reader) error {
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, content)
	x.stats.Bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badArchive(name, "its content is cut short")
	}
	if err != nil {
		return err
	}
	if err := x.root.Chmod(name, mode); err != nil {
		return err
	}
	return x.root.Chtimes(name, h.ModTime, h.ModTime)
}

// checkTargets finds which top-level entries already exist in dir: an
// error unless force.
func checkTargets(tmp, dir string, top []string, force bool) (exist []string, err error) {
	for _, name := range top {
		if name == filepath.Base(tmp) {
			return nil, badArchive(name, "its name is the restore's temporary folder")
		}
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			exist = append(exist, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nameErr(err)
		}
	}
	if len(exist) > 0 && !force {
		return nil, fmt.Errorf("client: %w in %s: %s (use --force to replace them); nothing was restored",
			ErrTargetExists, QuoteName(dir), quoteNames(exist))
	}
	return exist, nil
}

// moveIntoPlace moves the top-level entries from tmp to dir, replacing
// those in exist, which go to another temporary folder removed at the end.
func moveIntoPlace(tmp, dir string, top, exist []string) error {
	var old string
	if len(exist) > 0 {
		var err error
		if old, err = os.MkdirTemp(dir, ".coffer-replaced-*"); err != nil {
			return err
		}
		defer removeAll(old)
	}
	for _, name := range top {
		dst := filepath.Join(dir, name)
		replaced := slices.Contains(exist, name)
		if replaced {
			if err := os.Rename(dst, filepath.Join(old, name)); err != nil {
				return err
			}
		}
		if err := os.Rename(filepath.Join(tmp, name), dst); err != nil {
			if replaced {
				os.Rename(filepath.Join(old, name), dst)
			}
			return err
		}
	}
	return nil
}
