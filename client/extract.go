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
	"strconv"
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
	// Force replaces existing files or folders named like what the
	// restore puts in place (each is replaced as a whole).
	Force bool
	// Paths, if any, restore only these entries of the backup (names as
	// in the archive, which `coffer ls` shows), each with everything below
	// it and the folders above it. Each must be in the backup. What is put
	// in place is then each path, or its highest folder missing in the
	// restore folder: folders already there are kept, not replaced.
	Paths []string
	// DryRun decrypts and checks the whole backup as a restore does and
	// says what it would write and replace, writing nothing, not even
	// the restore folder.
	DryRun bool
	// Entry, if set, is called, once the restore succeeded, with every
	// entry it put in place (or, DryRun, would), in archive order.
	Entry func(Entry)
}

// RestoreStats says what a restore put in place (or, DryRun, would), or
// what ReadBackup read.
type RestoreStats struct {
	Files, Dirs, Symlinks, Links int
	Bytes                        int64
	// Top is what was put in place: the top-level entries, in archive
	// order, or RestoreOptions.Paths; raw: print them with QuoteName.
	Top []string
	// Replaced: those of Top that existed and were replaced (Force).
	Replaced []string
	// Archive is the length of the tar archive including its end
	// marker, Payload the length of all the age file decrypts to, its
	// padding included (SPEC.md, "Padding").
	Archive, Payload int64
}

// RestoreBackup decrypts the age file r with identity and restores its
// archive under dir (created if missing).
//
// Everything is first extracted into a new temporary folder inside dir,
// locked for as long as it exists (RestoreLeftovers). Only once the whole
// file has been read and authenticated — age checks every 64 KiB chunk and
// the end of the stream, so an error before the end means nothing is
// presented as complete — and every entry obeyed SPEC.md's path rules, are
// the top-level entries (or opts.Paths) moved into place. On any error the
// temporary folder is removed and dir is left as it was.
func RestoreBackup(r io.Reader, identity age.Identity, dir string, opts *RestoreOptions) (stats *RestoreStats, err error) {
	if opts == nil {
		opts = &RestoreOptions{}
	}
	sel, err := newSelection(opts.Paths)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, nameErr(err)
	}
	if opts.DryRun {
		return dryRestore(r, identity, dir, sel, opts)
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
	tmp, lock, err := mkdirLocked(dir, restorePrefix+"*")
	if err != nil {
		return nil, nameErr(err)
	}
	defer lock.Close()
	defer removeAll(tmp)

	root, err := os.OpenRoot(tmp)
	if err != nil {
		return nil, nameErr(err)
	}
	defer root.Close()
	x := &extractor{root: root, sel: sel, keep: opts.Entry != nil}
	if err := readArchive(r, identity, x.visit, &x.stats); err != nil {
		return nil, fmt.Errorf("%w; nothing was restored", err)
	}
	if err := x.sel.allFound(); err != nil {
		return nil, err
	}
	put := x.stats.Top
	if sel != nil {
		put = sel.paths
	}
	units, exist, err := planTargets(dir, put, opts.Force)
	if err != nil {
		return nil, err
	}
	if err := x.finish(units); err != nil {
		return nil, nameErr(err)
	}
	if err := moveIntoPlace(tmp, dir, units, exist); err != nil {
		return nil, nameErr(err)
	}
	for _, d := range x.dirs {
		if aboveUnit(d.name, units) {
			x.stats.Dirs-- // dir had it: not restored
		}
	}
	emitEntries(opts.Entry, x.list, units)
	x.stats.Top, x.stats.Replaced = put, exist
	return &x.stats, nil
}

// aboveUnit: name is a folder above something put in place, one the
// restore folder has already.
func aboveUnit(name string, units []string) bool {
	return slices.ContainsFunc(units, func(u string) bool { return strings.HasPrefix(u, name+"/") })
}

// emitEntries tells entry about the entries put in place.
func emitEntries(entry func(Entry), list []Entry, units []string) {
	if entry == nil {
		return
	}
	for _, e := range list {
		if !aboveUnit(e.Name, units) {
			entry(e)
		}
	}
}

// dryRestore is RestoreBackup with DryRun: every check, no write.
func dryRestore(r io.Reader, identity age.Identity, dir string, sel *selection, opts *RestoreOptions) (*RestoreStats, error) {
	var st RestoreStats
	var list []Entry
	visit := func(e Entry, content io.Reader) error {
		if !sel.wanted(e.Name) {
			return nil
		}
		sel.see(e.Name)
		if e.Type == TypeLink && !sel.wanted(e.Target) {
			return linkOutside(e)
		}
		if err := countEntry(&st, e, content); err != nil {
			return err
		}
		list = append(list, e)
		return nil
	}
	if err := readArchive(r, identity, visit, &st); err != nil {
		return nil, err
	}
	if err := sel.allFound(); err != nil {
		return nil, err
	}
	put := st.Top
	if sel != nil {
		put = sel.paths
	}
	units, exist, err := planTargets(dir, put, opts.Force)
	if err != nil {
		return nil, err
	}
	for _, e := range list {
		if e.Type == TypeDir && aboveUnit(e.Name, units) {
			st.Dirs--
		}
	}
	emitEntries(opts.Entry, list, units)
	st.Top, st.Replaced = put, exist
	return &st, nil
}

// ReadBackup decrypts the age file r with identity and reads its whole
// archive to the authenticated end, checking every rule a restore checks,
// writing nothing: `coffer verify` and `coffer ls`. entry, if set, is
// called with every entry in archive order, before the end of the file is
// authenticated: show them only once ReadBackup succeeded.
func ReadBackup(r io.Reader, identity age.Identity, entry func(Entry)) (*RestoreStats, error) {
	var st RestoreStats
	visit := func(e Entry, content io.Reader) error {
		if err := countEntry(&st, e, content); err != nil {
			return err
		}
		if entry != nil {
			entry(e)
		}
		return nil
	}
	if err := readArchive(r, identity, visit, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// countEntry counts e in st, reading a file's content to its end.
func countEntry(st *RestoreStats, e Entry, content io.Reader) error {
	switch e.Type {
	case TypeDir:
		st.Dirs++
	case TypeFile:
		n, err := io.Copy(io.Discard, content)
		st.Bytes += n
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return badArchive(e.Name, "its content is cut short")
		}
		if err != nil {
			return err
		}
		st.Files++
	case TypeSymlink:
		st.Symlinks++
	case TypeLink:
		st.Links++
	}
	if !strings.Contains(e.Name, "/") {
		st.Top = append(st.Top, e.Name)
	}
	return nil
}

// readArchive decrypts the age file r and reads its archive to the
// authenticated end, checking SPEC.md's reader rules, and calls visit
// with every entry, and a file's content. It sets st.Archive and
// st.Payload.
func readArchive(r io.Reader, identity age.Identity, visit func(Entry, io.Reader) error, st *RestoreStats) error {
	ar, err := age.Decrypt(bufio.NewReaderSize(r, 64<<10), identity)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return fmt.Errorf("client: %w", ErrWrongKey)
		}
		if interrupted(err) {
			return fmt.Errorf("client: interrupted: %w", err)
		}
		return fmt.Errorf("client: %w: %v", ErrDamaged, err)
	}
	src := &authReader{r: ar}
	err = walkArchive(src, visit, st)
	if src.err != nil && interrupted(src.err) {
		return fmt.Errorf("client: interrupted: %w", src.err)
	}
	if src.err != nil {
		return fmt.Errorf("client: %w (after %d bytes of archive): %v", ErrDamaged, src.n, src.err)
	}
	return err
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
	sel   *selection
	dirs  []dirMeta
	keep  bool    // keep list
	list  []Entry // the entries written
	stats RestoreStats
}

func badArchive(name, format string, args ...any) error {
	return fmt.Errorf("client: %w: entry %q: %s", ErrBadArchive, name, fmt.Sprintf(format, args...))
}

func linkOutside(e Entry) error {
	return fmt.Errorf("client: the hard link %s is to %s, which is not being restored: restore it too",
		QuoteName(e.Name), QuoteName(e.Target))
}

// walkArchive reads the archive from src, checking SPEC.md's reader rules
// and calling visit with every entry, then reads to the end: only zeros
// may follow the archive.
func walkArchive(src *authReader, visit func(Entry, io.Reader) error, st *RestoreStats) error {
	c := archiveChecker{kinds: map[string]entryKind{}}
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("client: %w: %v", ErrBadArchive, err)
		}
		e, err := c.check(h)
		if err != nil {
			return err
		}
		if err := visit(e, tr); err != nil {
			return nameErr(err)
		}
	}
	st.Archive = src.n
	// Read to the very end: only there does age authenticate the last
	// chunk. A tar writer pads with zeros (tar's records, Coffer's
	// padding); anything else is refused.
	if err := drainZeros(src); err != nil {
		return err
	}
	st.Payload = src.n
	return nil
}

// archiveChecker enforces SPEC.md's reader rules 1 to 6 on each header in
// turn.
type archiveChecker struct {
	kinds map[string]entryKind
}

func (c *archiveChecker) check(h *tar.Header) (Entry, error) {
	name := h.Name
	if h.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if err := checkEntryName(name); err != nil {
		return Entry{}, badArchive(h.Name, "%v", err)
	}
	if _, dup := c.kinds[name]; dup {
		return Entry{}, badArchive(name, "appears twice")
	}
	if parent := path.Dir(name); parent != "." && c.kinds[parent] != kindDir {
		// Also what stops a file written through a symlink or into a
		// folder that is not the archive's own.
		return Entry{}, badArchive(name, "its folder %q is not an earlier folder entry of the archive", parent)
	}
	for k := range h.PAXRecords {
		// archive/tar expands GNU sparse files itself: a few bytes could
		// declare terabytes of holes.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return Entry{}, badArchive(name, "sparse files are not allowed")
		}
	}
	var kind entryKind
	switch h.Typeflag {
	case tar.TypeDir:
		kind = kindDir
	case tar.TypeReg:
		kind = kindFile
	case tar.TypeSymlink:
		if err := checkSymlink(name, h.Linkname); err != nil {
			return Entry{}, badArchive(name, "symlink to %q: %v", h.Linkname, err)
		}
		kind = kindSymlink
	case tar.TypeLink:
		if err := checkEntryName(h.Linkname); err != nil {
			return Entry{}, badArchive(name, "hard link to %q: %v", h.Linkname, err)
		}
		if c.kinds[h.Linkname] != kindFile {
			return Entry{}, badArchive(name, "hard link to %q, which is not an earlier file of the archive", h.Linkname)
		}
		kind = kindLink
	default:
		return Entry{}, badArchive(name, "entry type %q is not allowed (only files, folders, symlinks and hard links)", h.Typeflag)
	}
	c.kinds[name] = kind
	e := headerEntry(h)
	e.Name = name
	return e, nil
}

// finish gives folders their modes and times: last, deepest first, so that
// a read-only folder was still writable while it was filled. Folders above
// what is moved into place stay in the temporary folder, writable, so
// that it can be moved out of them.
func (x *extractor) finish(units []string) error {
	for _, d := range slices.Backward(x.dirs) {
		if aboveUnit(d.name, units) {
			continue
		}
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

// visit writes one entry that passed the rules into the temporary
// folder, if selected.
func (x *extractor) visit(e Entry, content io.Reader) error {
	if !x.sel.wanted(e.Name) {
		return nil // its content is read, and authenticated, all the same
	}
	x.sel.see(e.Name)
	switch e.Type {
	case TypeDir:
		if err := x.root.Mkdir(e.Name, 0o700); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirMeta{e.Name, e.Mode, e.ModTime})
		x.stats.Dirs++
	case TypeFile:
		if err := x.file(e, content); err != nil {
			return err
		}
		x.stats.Files++
	case TypeSymlink:
		if err := x.root.Symlink(e.Target, e.Name); err != nil {
			return err
		}
		x.stats.Symlinks++
	case TypeLink:
		if !x.sel.wanted(e.Target) {
			return linkOutside(e)
		}
		if err := x.root.Link(e.Target, e.Name); err != nil {
			return err
		}
		x.stats.Links++
	}
	if !strings.Contains(e.Name, "/") {
		x.stats.Top = append(x.stats.Top, e.Name)
	}
	if x.keep {
		x.list = append(x.list, e)
	}
	return nil
}

func (x *extractor) file(e Entry, content io.Reader) error {
	f, err := x.root.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, content)
	x.stats.Bytes += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badArchive(e.Name, "its content is cut short")
	}
	if err != nil {
		return err
	}
	if err := x.root.Chmod(e.Name, e.Mode); err != nil {
		return err
	}
	return x.root.Chtimes(e.Name, e.ModTime, e.ModTime)
}

// selection is RestoreOptions.Paths; nil selects everything.
type selection struct {
	paths []string
	found map[string]bool
}

func newSelection(paths []string) (*selection, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	var clean []string
	for _, p := range paths {
		q := strings.TrimSuffix(p, "/")
		if err := checkEntryName(q); err != nil {
			return nil, fmt.Errorf("client: %s is not a path in a backup: %v", QuoteName(p), err)
		}
		clean = append(clean, q)
	}
	s := &selection{found: map[string]bool{}}
	for _, p := range clean {
		// One under another (or twice) is restored with it.
		if !slices.ContainsFunc(clean, func(o string) bool { return strings.HasPrefix(p, o+"/") }) && !slices.Contains(s.paths, p) {
			s.paths = append(s.paths, p)
		}
	}
	return s, nil
}

// wanted: name is a path selected, is below one, or is a folder above one.
func (s *selection) wanted(name string) bool {
	if s == nil {
		return true
	}
	for _, p := range s.paths {
		if name == p || strings.HasPrefix(name, p+"/") || strings.HasPrefix(p, name+"/") {
			return true
		}
	}
	return false
}

func (s *selection) see(name string) {
	if s != nil && slices.Contains(s.paths, name) {
		s.found[name] = true
	}
}

func (s *selection) allFound() error {
	if s == nil {
		return nil
	}
	var missing []string
	for _, p := range s.paths {
		if !s.found[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("client: not in the backup: %s (`coffer ls FILE` lists what it holds); nothing was restored", quoteNames(missing))
	}
	return nil
}

// planTargets finds, for each path to put in place in dir, what to move
// there: the path itself, or its highest folder missing in dir (folders
// already there are kept, and must be real folders). Paths that exist are
// returned in exist, an error unless force.
func planTargets(dir string, put []string, force bool) (units, exist []string, err error) {
	for _, p := range put {
		elems := strings.Split(p, "/")
		if isRestoreTempName(elems[0]) {
			// The next restore here would take it for a leftover.
			return nil, nil, badArchive(p, "its name is kept for the temporary folders of restores; nothing was restored")
		}
		unit := p
		for i := 1; i <= len(elems); i++ {
			a := strings.Join(elems[:i], "/")
			fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(a)))
			if errors.Is(err, fs.ErrNotExist) {
				unit = a
				break
			}
			if err != nil {
				return nil, nil, nameErr(err)
			}
			if i < len(elems) {
				if !fi.IsDir() {
					return nil, nil, fmt.Errorf("client: cannot restore %s: %s in %s is not a folder; nothing was restored",
						QuoteName(p), QuoteName(a), QuoteName(dir))
				}
				continue
			}
			exist = append(exist, p)
		}
		if !slices.Contains(units, unit) {
			units = append(units, unit)
		}
	}
	if len(exist) > 0 && !force {
		return nil, nil, fmt.Errorf("client: %w in %s: %s (use --force to replace them); nothing was restored",
			ErrTargetExists, QuoteName(dir), quoteNames(exist))
	}
	return units, exist, nil
}

// moveIntoPlace moves units from tmp to the same place in dir, first
// moving those in exist aside, into tmp, so that they go with it.
func moveIntoPlace(tmp, dir string, units, exist []string) error {
	var old string
	if len(exist) > 0 {
		var err error
		if old, err = os.MkdirTemp(tmp, replacedPrefix+"*"); err != nil {
			return err
		}
	}
	for i, u := range units {
		dst := filepath.Join(dir, filepath.FromSlash(u))
		aside := filepath.Join(old, strconv.Itoa(i))
		replaced := slices.Contains(exist, u)
		if replaced {
			if err := os.Rename(dst, aside); err != nil {
				return err
			}
		}
		if err := os.Rename(filepath.Join(tmp, filepath.FromSlash(u)), dst); err != nil {
			if replaced {
				os.Rename(aside, dst)
			}
			return err
		}
	}
	return nil
}
