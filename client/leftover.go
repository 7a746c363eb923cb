package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A backup is written to a temporary file beside its output, a restore
// into a temporary folder inside its target folder (SPEC.md, "Leftovers").
// A run that is killed (SIGKILL, a power cut) cannot remove them: a partial
// backup, or a folder of plaintext. So the running process holds an
// exclusive flock on its temporary file or folder for as long as it
// exists, and the next run in the same folder removes those nobody holds.

// Leftover is a temporary file or folder of a backup or restore found in
// a folder.
type Leftover struct {
	Path    string // raw: print it with QuoteName
	Size    int64  // bytes: the file's, or those of the files in the folder
	Held    bool   // a running process holds its lock: left alone
	Removed bool
	Err     error // why it could not be removed
}

const (
	partialInfix    = ".partial-"
	restorePrefix   = ".coffer-restore-"
	replacedPrefix  = ".coffer-replaced-" // left by clients before 2026-12
	ageHeaderPrefix = "age-encryption.org/v1\n"
)

// digits reports whether s is non-empty and all ASCII digits, as the
// random part of os.CreateTemp and os.MkdirTemp names is.
func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isPartialName: ".NAME.partial-DIGITS", the temporary file of a backup
// to NAME.
func isPartialName(name string) bool {
	i := strings.LastIndex(name, partialInfix)
	return i >= 2 && name[0] == '.' && digits(name[i+len(partialInfix):])
}

// isRestoreTempName: ".coffer-restore-DIGITS", a restore's temporary
// folder (or ".coffer-replaced-DIGITS", where older clients moved what
// --force replaced).
func isRestoreTempName(name string) bool {
	for _, p := range []string{restorePrefix, replacedPrefix} {
		if rest, ok := strings.CutPrefix(name, p); ok && digits(rest) {
			return true
		}
	}
	return false
}

// CreatePartial creates the temporary file a backup to out is written to,
// beside out and named after it, and holds its lock until it is closed.
func CreatePartial(out string) (*os.File, error) {
	for range 10 {
		f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+partialInfix+"*")
		if err != nil {
			return nil, err
		}
		if lockOwn(f) {
			return f, nil
		}
		// Another run's cleanup took it for a leftover between its
		// creation and the lock, and removes it.
		f.Close()
	}
	return nil, errors.New("client: could not lock a temporary file: another coffer keeps removing them")
}

// mkdirLocked creates a temporary folder in dir named by pattern and holds
// its lock until lock is closed.
func mkdirLocked(dir, pattern string) (name string, lock *os.File, err error) {
	for range 10 {
		name, err := os.MkdirTemp(dir, pattern)
		if err != nil {
			return "", nil, err
		}
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed already by another run's cleanup
		} else if err != nil {
			os.Remove(name)
			return "", nil, err
		}
		if lockOwn(f) {
			return name, f, nil
		}
		f.Close()
	}
	return "", nil, errors.New("client: could not lock a temporary folder: another coffer keeps removing them")
}

// lockOwn locks f, which this process just made at f.Name(), and checks
// that the name still is f: a cleanup that took it for a leftover between
// its creation and the lock removed it (under the lock, so once f is
// locked and still there, no cleanup touches it).
//
// Where the filesystem has no flock (the lock fails other than by being
// held), f goes on unlocked: a cleanup there cannot take any lock either,
// so it removes nothing.
func lockOwn(f *os.File) bool {
	if !canLock {
		return true
	}
	ok, err := tryLock(f)
	if err != nil {
		return true
	}
	return ok && sameAsName(f)
}

func sameAsName(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	ni, err := os.Lstat(f.Name())
	return err == nil && os.SameFile(fi, ni)
}

// BackupLeftovers finds, in dir, the temporary files of backups that were
// killed: ".NAME.partial-DIGITS", a regular file that is empty or begins
// as an age file. With remove, it removes each that no running process
// holds. A missing dir has none.
func BackupLeftovers(dir string, remove bool) ([]Leftover, error) {
	return leftovers(dir, isPartialName, false, remove)
}

// RestoreLeftovers finds, in dir, the temporary folders of restores that
// were killed: ".coffer-restore-DIGITS" (and ".coffer-replaced-DIGITS"),
// a real folder. With remove, it removes each that no running process
// holds. A missing dir has none.
func RestoreLeftovers(dir string, remove bool) ([]Leftover, error) {
	return leftovers(dir, isRestoreTempName, true, remove)
}

func leftovers(dir string, match func(string) bool, isDir, remove bool) ([]Leftover, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, nameErr(err)
	}
	var out []Leftover
	for _, e := range entries {
		if !match(e.Name()) {
			continue
		}
		if l, ok := leftover(filepath.Join(dir, e.Name()), isDir, remove); ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// leftover looks at one candidate; ok is false when it is not one of ours
// (another type, other content) or is gone.
func leftover(p string, isDir, remove bool) (l Leftover, ok bool) {
	fi, err := os.Lstat(p)
	if err != nil || fi.IsDir() != isDir || (!isDir && !fi.Mode().IsRegular()) {
		return l, false
	}
	f, err := os.Open(p)
	if err != nil {
		return l, false
	}
	defer f.Close()
	if !sameAsName(f) {
		return l, false // replaced by something else since the Lstat
	}
	if !isDir {
		head := make([]byte, len(ageHeaderPrefix))
		n, _ := io.ReadFull(f, head)
		if !bytes.HasPrefix([]byte(ageHeaderPrefix), head[:n]) {
			return l, false // not a backup being written
		}
	}
	l = Leftover{Path: p, Size: fi.Size()}
	if isDir {
		l.Size = treeBytes(p)
	}
	locked, err := tryLock(f)
	if !locked {
		// Held by a running process (or no locks here, or the lock
		// failed): left alone.
		l.Held = true
		return l, true
	}
	if !remove {
		return l, true
	}
	if !sameAsName(f) {
		return l, false // its owner finished and removed or renamed it
	}
	if isDir {
		err = removeAll(p)
	} else {
		err = os.Remove(p)
	}
	if err != nil {
		l.Err = fmt.Errorf("client: removing %s: %w", QuoteName(p), nameErr(err))
	} else {
		l.Removed = true
	}
	return l, true
}

// treeBytes adds up the sizes of the regular files under dir.
func treeBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
