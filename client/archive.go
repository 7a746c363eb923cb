package client

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
)

// BackupOptions tune WriteBackup and ScanBackup. The zero value is fine.
type BackupOptions struct {
	// Warn is told about every entry left out against the user's wish
	// (sockets, devices, named pipes, symlinks pointing outside the
	// backup, files or folders that cannot be read), with the names in
	// msg quoted (QuoteName). nil: silently. BackupStats.LeftOut lists
	// them too.
	Warn func(msg string)
	// Exclude leaves out, on purpose, the entries it matches (and
	// everything below a folder it matches).
	Exclude *Excludes
	// Skip lists files not to back up, matched with os.SameFile: the
	// backup's own output, when it is written inside a backed-up folder.
	// They count as excluded.
	Skip []os.FileInfo
	// Progress, if set, is called with the number of file bytes just
	// read, as they are read.
	Progress func(n int64)
	// Entry, if set, is called with every entry the backup holds, in
	// archive order; Excluded with the path on disk of every entry an
	// Exclude pattern (or Skip) left out, and the pattern ("" for Skip).
	Entry    func(Entry)
	Excluded func(disk, pattern string)
}

// BackupStats counts what a backup holds.
type BackupStats struct {
	Files, Dirs, Symlinks int
	Bytes                 int64 // of file contents
	// Skipped counts the entries left out against the user's wish;
	// LeftOut names them (the first MaxLeftOutListed). A backup with
	// Skipped > 0 is incomplete.
	Skipped int
	LeftOut []LeftOut
	// Excluded counts the entries left out on purpose (Exclude, Skip),
	// a folder with everything below it as one.
	Excluded int
	// Archive is the tar archive's length, Payload the length the age
	// file encrypts: Archive padded with zeros to PadmeLength(Archive).
	// Both 0 for ScanBackup.
	Archive, Payload int64
}

// MaxLeftOutListed bounds BackupStats.LeftOut, so that memory does not
// grow with the tree; Skipped counts them all.
const MaxLeftOutListed = 1000

// LeftOut is an entry a backup left out against the user's wish.
type LeftOut struct {
	Path   string // on disk, raw: print it with QuoteName
	Reason string // names quoted
}

// EntryType is the type of an entry of a backup.
type EntryType byte

// Entry types, as `coffer ls` shows them.
const (
	TypeDir     EntryType = 'd'
	TypeFile    EntryType = '-'
	TypeSymlink EntryType = 'l'
	TypeLink    EntryType = 'h' // hard link: never written, accepted (SPEC.md rule 6)
)

func (t EntryType) String() string {
	switch t {
	case TypeDir:
		return "dir"
	case TypeFile:
		return "file"
	case TypeSymlink:
		return "symlink"
	case TypeLink:
		return "hardlink"
	}
	return "unknown"
}

// Entry is one entry of a backup.
type Entry struct {
	Name    string // as in the archive, without a folder's trailing "/"; raw: print it with QuoteName
	Type    EntryType
	Mode    fs.FileMode // permission bits
	Size    int64       // a file's content
	ModTime time.Time
	Target  string // a symlink's target, a hard link's file
}

// WriteBackup writes an age file to w, encrypted to recipient, holding a tar
// archive of paths (SPEC.md, "Backup format"), padded (SPEC.md, "Padding").
// Each path becomes a top-level entry named after its last element, with
// its tree below it; a path given as a symlink is followed, symlinks inside
// are stored as symlinks. Memory use does not depend on the size of what is
// backed up.
//
// It needs only the recipient: no vault and no secret.
func WriteBackup(w io.Writer, recipient age.Recipient, paths []string, opts *BackupOptions) (*BackupStats, error) {
	tops, err := backupRoots(paths)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	aw, err := age.Encrypt(bw, recipient)
	if err != nil {
		return nil, err
	}
	cw := &countingWriter{w: aw}
	b := &backupWriter{tw: tar.NewWriter(cw), opts: opts}
	if err := b.trees(tops); err != nil {
		return nil, err
	}
	if err := b.tw.Close(); err != nil {
		return nil, err
	}
	b.stats.Archive = cw.n
	b.stats.Payload = PadmeLength(cw.n)
	if err := writeZeros(aw, b.stats.Payload-b.stats.Archive); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	return &b.stats, nil
}

// ScanBackup walks paths as WriteBackup would, writing nothing and reading
// no file's content (each file is opened, to find those it cannot read):
// what a backup would hold and leave out.
func ScanBackup(paths []string, opts *BackupOptions) (*BackupStats, error) {
	tops, err := backupRoots(paths)
	if err != nil {
		return nil, err
	}
	b := &backupWriter{opts: opts}
	if err := b.trees(tops); err != nil {
		return nil, err
	}
	return &b.stats, nil
}

// trees walks every top-level path in turn.
func (b *backupWriter) trees(tops []backupRoot) error {
	if b.opts == nil {
		b.opts = &BackupOptions{}
	}
	for _, t := range tops {
		if err := b.tree(t); err != nil {
			return err
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func writeZeros(w io.Writer, n int64) error {
	zeros := make([]byte, min(n, 64<<10))
	for n > 0 {
		k, err := w.Write(zeros[:min(n, int64(len(zeros)))])
		if err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

type backupRoot struct {
	dir  string // resolved path on disk
	abs  string // the path given, made absolute: for messages and patterns
	name string // top-level entry name
}

// backupRoots resolves the paths given and names their top-level entries,
// refusing none and two with the same name.
func backupRoots(paths []string) ([]backupRoot, error) {
	if len(paths) == 0 {
		return nil, errors.New("client: nothing to back up")
	}
	var tops []backupRoot
	seen := map[string]string{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, nameErr(err)
		}
		name := filepath.Base(abs)
		if name == string(filepath.Separator) || name == "." || name == ".." {
			return nil, fmt.Errorf("client: cannot back up %q as a whole: name the folders inside it", p)
		}
		if err := checkEntryName(filepath.ToSlash(name)); err != nil {
			return nil, fmt.Errorf("client: cannot back up %q: %w", p, err)
		}
		if other, ok := seen[name]; ok {
			return nil, fmt.Errorf("client: %q and %q would both be %q in the backup", other, p, name)
		}
		seen[name] = p
		dir, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, nameErr(err)
		}
		tops = append(tops, backupRoot{dir: dir, abs: abs, name: name})
	}
	return tops, nil
}

// backupWriter walks the trees to back up; tw nil: a scan (ScanBackup).
type backupWriter struct {
	tw    *tar.Writer
	opts  *BackupOptions
	stats BackupStats
}

// leaveOut records an entry left out against the user's wish.
func (b *backupWriter) leaveOut(disk, format string, args ...any) {
	reason := fmt.Sprintf(format, args...)
	b.stats.Skipped++
	if len(b.stats.LeftOut) < MaxLeftOutListed {
		b.stats.LeftOut = append(b.stats.LeftOut, LeftOut{Path: disk, Reason: reason})
	}
	if b.opts.Warn != nil {
		b.opts.Warn(fmt.Sprintf("left out %s: %s", QuoteName(disk), reason))
	}
}

func (b *backupWriter) exclude(disk, pattern string) {
	b.stats.Excluded++
	if b.opts.Excluded != nil {
		b.opts.Excluded(disk, pattern)
	}
}

func (b *backupWriter) skipped(fi os.FileInfo) bool {
	for _, s := range b.opts.Skip {
		if s != nil && os.SameFile(fi, s) {
			return true
		}
	}
	return false
}

// reason is what went wrong with an entry, without its name.
func reason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return nameErr(err).Error()
}

func (b *backupWriter) tree(t backupRoot) error {
	return filepath.WalkDir(t.dir, func(p string, d fs.DirEntry, err error) error {
		rel, rerr := filepath.Rel(t.dir, p)
		if rerr != nil {
			return rerr
		}
		name, disk := t.name, t.abs
		if rel != "." {
			name = path.Join(t.name, filepath.ToSlash(rel))
			disk = filepath.Join(t.abs, rel)
		}
		if err != nil {
			if rel == "." && d == nil {
				return fmt.Errorf("client: backing up: %w", nameErr(err))
			}
			// A folder whose contents cannot be listed (its own entry
			// is in the backup already), or an entry gone since.
			if d != nil && d.IsDir() {
				b.leaveOut(disk, "its contents could not be read (%s)", reason(err))
			} else {
				b.leaveOut(disk, "%s", reason(err))
			}
			return nil
		}
		if err := checkEntryName(name); err != nil {
			return fmt.Errorf("client: cannot back up %s: %w", QuoteName(disk), err)
		}
		if pat, ok := b.opts.Exclude.Match(name, disk); ok {
			b.exclude(disk, pat)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			b.leaveOut(disk, "%s", reason(err))
			return nil
		}
		if b.skipped(fi) {
			b.exclude(disk, "")
			return nil
		}
		return b.entry(p, disk, name, fi)
	})
}

func header(name string, fi os.FileInfo, typ byte) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     int64(fi.Mode().Perm()),
		ModTime:  fi.ModTime().Truncate(time.Second),
	}
}

// write writes h, or in a scan only counts it, and tells opts.Entry.
func (b *backupWriter) write(h *tar.Header) error {
	if b.tw != nil {
		if err := b.tw.WriteHeader(h); err != nil {
			return err
		}
	}
	if b.opts.Entry != nil {
		b.opts.Entry(headerEntry(h))
	}
	return nil
}

func headerEntry(h *tar.Header) Entry {
	e := Entry{Name: h.Name, Mode: fs.FileMode(h.Mode).Perm(), ModTime: h.ModTime, Target: h.Linkname}
	switch h.Typeflag {
	case tar.TypeDir:
		e.Type, e.Name = TypeDir, strings.TrimSuffix(h.Name, "/")
	case tar.TypeReg:
		e.Type, e.Size = TypeFile, h.Size
	case tar.TypeSymlink:
		e.Type = TypeSymlink
	case tar.TypeLink:
		e.Type = TypeLink
	}
	return e
}

func (b *backupWriter) entry(p, disk, name string, fi os.FileInfo) error {
	switch mode := fi.Mode(); {
	case mode.IsDir():
		b.stats.Dirs++
		return b.write(header(name+"/", fi, tar.TypeDir))
	case mode.IsRegular():
		return b.file(p, disk, name)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			b.leaveOut(disk, "%s", reason(err))
			return nil
		}
		if err := checkSymlink(name, target); err != nil {
			b.leaveOut(disk, "a symlink to %s: %v", QuoteName(target), err)
			return nil
		}
		h := header(name, fi, tar.TypeSymlink)
		h.Linkname = target
		b.stats.Symlinks++
		return b.write(h)
	default:
		b.leaveOut(disk, "a %s, not a file, folder or symlink", typeName(mode))
		return nil
	}
}
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// file stores one regular file, with the size it had when opened: a file
// that shrinks while read is an error, one that grows is cut at that size.
// One that cannot be opened is left out.
func (b *backupWriter) file(p, disk, name string) error {
	f, err := os.Open(p)
	if err != nil {
		b.leaveOut(disk, "%s", reason(err))
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nameErr(err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("client: %s changed type while being backed up", QuoteName(disk))
	}
	h := header(name, fi, tar.TypeReg)
	h.Size = fi.Size()
	if err := b.write(h); err != nil {
		return err
	}
	if b.tw == nil {
		b.stats.Bytes += h.Size
		b.stats.Files++
		return nil
	}
	var src io.Reader = f
	if b.opts.Progress != nil {
		src = progressReader{f, b.opts.Progress}
	}
	n, err := io.CopyN(b.tw, src, h.Size)
	b.stats.Bytes += n
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("client: %s shrank while being backed up (%d of %d bytes)", QuoteName(disk), n, h.Size)
	}
	if err != nil {
		return fmt.Errorf("client: backing up %s: %w", QuoteName(disk), nameErr(err))
	}
	b.stats.Files++
	return nil
}

type progressReader struct {
	r io.Reader
	f func(int64)
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.f(int64(n))
	}
	return n, err
}

// TreeSize adds up the sizes of the regular files under paths (following
// the paths themselves if they are symlinks, not symlinks below them) that
// exclude does not leave out, for a progress bar. Errors are ignored: the
// backup itself reports them.
func TreeSize(paths []string, exclude *Excludes) int64 {
	tops, err := backupRoots(paths)
	if err != nil {
		return 0
	}
	var total int64
	for _, t := range tops {
		filepath.WalkDir(t.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			name, disk := t.name, t.abs
			if rel, err := filepath.Rel(t.dir, p); err == nil && rel != "." {
				name, disk = path.Join(t.name, filepath.ToSlash(rel)), filepath.Join(t.abs, rel)
			}
			if _, ok := exclude.Match(name, disk); ok {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total
}

// checkEntryName enforces SPEC.md's path rules on an entry name (without a
// directory's trailing slash): relative, clean, no "." or ".." element, no
// NUL, no empty element.
func checkEntryName(name string) error {
	switch {
	case name == "" || name == ".":
		return errors.New("empty name")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("name contains a NUL byte")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute path")
	case len(name) > 4096:
		return errors.New("name longer than 4096 bytes")
	}
	for _, el := range strings.Split(name, "/") {
		switch el {
		case "":
			return errors.New("empty path element (a doubled or trailing slash)")
		case ".":
			return errors.New(`"." path element`)
		case "..":
			return errors.New(`".." path element`)
		}
	}
	return nil
}

// checkSymlink enforces SPEC.md's rule on a symlink named name: its target
// is relative, climbs with leading ".." elements only, and stays inside the
// restore folder, judged from the link's own folder.
func checkSymlink(name, target string) error {
	switch {
	case target == "":
		return errors.New("empty target")
	case strings.IndexByte(target, 0) >= 0:
		return errors.New("target contains a NUL byte")
	case strings.HasPrefix(target, "/"):
		return errors.New("absolute target")
	case len(target) > 4096:
		return errors.New("target longer than 4096 bytes")
	}
	up := 0
	climbing := true
	for _, el := range strings.Split(target, "/") {
		switch {
		case el == "..":
			if !climbing {
				return errors.New(`".." after a name in the target`)
			}
			up++
		case el == "" || el == ".":
			// "a//b", "./a", "a/": harmless, as the OS reads them
		default:
			climbing = false
		}
	}
	depth := strings.Count(name, "/") // folders the link sits in
	if up > depth {
		return errors.New("target points outside the backup")
	}
	return nil
}
