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

// BackupOptions tune WriteBackup. The zero value is fine.
type BackupOptions struct {
	// Warn is told about every file left out (sockets, devices, symlinks
	// pointing outside the backup, Skip), with the names in msg quoted
	// (QuoteName). nil: silently.
	Warn func(msg string)
	// Skip lists files not to back up, matched with os.SameFile: the
	// backup's own output, when it is written inside a backed-up folder.
	Skip []os.FileInfo
	// Progress, if set, is called with the number of file bytes just
	// read, as they are read.
	Progress func(n int64)
}

// BackupStats counts what a backup holds.
type BackupStats struct {
	Files, Dirs, Symlinks, Skipped int
	Bytes                          int64 // of file contents
}

// WriteBackup writes an age file to w, encrypted to recipient, holding a tar
// archive of paths (SPEC.md, "Backup format"). Each path becomes a top-level
// entry named after its last element, with its tree below it; a path given
// as a symlink is followed, symlinks inside are stored as symlinks. Memory
// use does not depend on the size of what is backed up.
//
// It needs only the recipient: no vault and no secret.
func WriteBackup(w io.Writer, recipient age.Recipient, paths []string, opts *BackupOptions) (*BackupStats, error) {
	if opts == nil {
		opts = &BackupOptions{}
	}
	if len(paths) == 0 {
		return nil, errors.New("client: nothing to back up")
	}
	tops, err := backupRoots(paths)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	aw, err := age.Encrypt(bw, recipient)
	if err != nil {
		return nil, err
	}
	b := &backupWriter{tw: tar.NewWriter(aw), opts: opts}
	for _, t := range tops {
		if err := b.tree(t.dir, t.name); err != nil {
			return nil, err
		}
	}
	if err := b.tw.Close(); err != nil {
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

type backupRoot struct {
	dir  string // resolved path on disk
	name string // top-level entry name
}

// backupRoots resolves the paths given and names their top-level entries,
// refusing two with the same name.
func backupRoots(paths []string) ([]backupRoot, error) {
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
		tops = append(tops, backupRoot{dir: dir, name: name})
	}
	return tops, nil
}

type backupWriter struct {
	tw    *tar.Writer
	opts  *BackupOptions
	stats BackupStats
}

func (b *backupWriter) warn(format string, args ...any) {
	b.stats.Skipped++
	if b.opts.Warn != nil {
		b.opts.Warn(fmt.Sprintf(format, args...))
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

func (b *backupWriter) tree(root, top string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("client: backing up: %w", nameErr(err))
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := top
		if rel != "." {
			name = path.Join(top, filepath.ToSlash(rel))
		}
		if err := checkEntryName(name); err != nil {
			return fmt.Errorf("client: cannot back up %s: %w", QuoteName(p), err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nameErr(err)
		}
		if b.skipped(fi) {
			b.warn("left out %s (the backup's own output)", QuoteName(p))
			return nil
		}
		return b.entry(p, name, fi)
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

func (b *backupWriter) entry(p, name string, fi os.FileInfo) error {
	switch mode := fi.Mode(); {
	case mode.IsDir():
		b.stats.Dirs++
		return b.tw.WriteHeader(header(name+"/", fi, tar.TypeDir))
	case mode.IsRegular():
		return b.file(p, name)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return nameErr(err)
		}
		if err := checkSymlink(name, target); err != nil {
			b.warn("left out symlink %s -> %s: %v", QuoteName(p), QuoteName(target), err)
			return nil
		}
		h := header(name, fi, tar.TypeSymlink)
		h.Linkname = target
		b.stats.Symlinks++
		return b.tw.WriteHeader(h)
	default:
		b.warn("left out %s: a %s, not a file, folder or symlink", QuoteName(p), typeName(mode))
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
func (b *backupWriter) file(p, name string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("client: backing up: %w", nameErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nameErr(err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("client: %s changed type while being backed up", QuoteName(p))
	}
	h := header(name, fi, tar.TypeReg)
	h.Size = fi.Size()
	if err := b.tw.WriteHeader(h); err != nil {
		return err
	}
	var src io.Reader = f
	if b.opts.Progress != nil {
		src = progressReader{f, b.opts.Progress}
	}
	n, err := io.CopyN(b.tw, src, h.Size)
	b.stats.Bytes += n
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("client: %s shrank while being backed up (%d of %d bytes)", QuoteName(p), n, h.Size)
	}
	if err != nil {
		return fmt.Errorf("client: backing up %s: %w", QuoteName(p), nameErr(err))
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
// the paths themselves if they are symlinks, not symlinks below them), for
// a progress bar. Errors are ignored: the backup itself reports them.
func TreeSize(paths []string) int64 {
	var total int64
	for _, p := range paths {
		root, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
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
