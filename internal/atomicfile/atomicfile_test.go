package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteReplacesWholeAndLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, content := range []string{"first\n", "second, longer\n", "3\n"} {
		if err := Write(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; wrote %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d entries in the folder, want only the file", len(entries))
	}
}

func TestWriteIntoAMissingFolderFails(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "file"), []byte("x")); err == nil {
		t.Fatal("wrote into a folder that does not exist")
	}
}

// Create writes the file with its mode and refuses a file that is there,
// leaving it as it was and no temporary file beside it, also where the
// file system makes no hard links (FAT answers EPERM).
func TestCreateRefusesAnExistingFile(t *testing.T) {
	for _, links := range []bool{true, false} {
		t.Run(fmt.Sprint("hard links ", links), func(t *testing.T) {
			if !links {
				withoutHardLinks(t)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "ca.key")
			if err := Create(path, []byte("first"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Create(path, []byte("second"), 0o600)
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("second Create: %v, want an error wrapping fs.ErrExist", err)
			}
			if got, _ := os.ReadFile(path); string(got) != "first" {
				t.Fatalf("the file holds %q after a refused Create", got)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, %v", fi.Mode(), err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Fatalf("%d entries in the folder, want only the file", len(entries))
			}
		})
	}
}

// Whoever looks at the path while Create writes (a crash would freeze what
// they see) finds no file or the whole of it, never part: a torn key file
// would refuse every rerun of the command that was writing it.
func TestCreateIsNeverSeenTorn(t *testing.T) {
	dir := t.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	for i := range 3 {
		path := filepath.Join(dir, fmt.Sprint("key", i))
		done := make(chan error, 1)
		go func() { done <- Create(path, content, 0o644) }()
		for finished := false; !finished; {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				finished = true
			default:
			}
			if fi, err := os.Stat(path); err == nil && fi.Size() != int64(len(content)) {
				t.Fatalf("%s seen with %d of its %d bytes", path, fi.Size(), len(content))
			}
		}
	}
}

// withoutHardLinks makes link fail as on FAT (EPERM) for the rest of the
// test.
func withoutHardLinks(t *testing.T) {
	old := link
	t.Cleanup(func() { link = old })
	link = func(oldname, newname string) error {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EPERM}
	}
}

// A symbolic link planted at the path, to a file or to nowhere, is
// refused, on either route, and nothing is written through it.
func TestCreateRefusesAPlantedLink(t *testing.T) {
	for _, links := range []bool{true, false} {
		t.Run(fmt.Sprint("hard links ", links), func(t *testing.T) {
			if !links {
				withoutHardLinks(t)
			}
			dir := t.TempDir()
			target, dangling := filepath.Join(dir, "target"), filepath.Join(dir, "nowhere")
			if err := os.WriteFile(target, []byte("theirs"), 0o644); err != nil {
				t.Fatal(err)
			}
			for name, to := range map[string]string{"live": target, "dangling": dangling} {
				path := filepath.Join(dir, name)
				if err := os.Symlink(to, path); err != nil {
					t.Fatal(err)
				}
				if err := Create(path, []byte("secret"), 0o600); !errors.Is(err, fs.ErrExist) {
					t.Fatalf("%s link: %v, want fs.ErrExist", name, err)
				}
			}
			if got, _ := os.ReadFile(target); string(got) != "theirs" {
				t.Fatalf("written through the link: %q", got)
			}
			if _, err := os.Lstat(dangling); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the dangling link's target was made: %v", err)
			}
		})
	}
}

// What Create says when it refuses names the path the caller gave, and a
// long name that fits is not refused for its temporary name's length.
func TestCreateErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	if err := Create(path, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Create(path, []byte("k"), 0o600)
	if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), ".ca.key.") {
		t.Fatalf("refusal says %q", err)
	}
	long := filepath.Join(dir, strings.Repeat("é", 120)+".key") // 244 bytes
	if err := Create(long, []byte("k"), 0o600); err != nil {
		t.Fatalf("a 244-byte name: %v", err)
	}
}
