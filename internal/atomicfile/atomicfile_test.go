package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// Create refuses a file that is there, and leaves it as it was.
func TestCreateRefusesAnExistingFile(t *testing.T) {
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

// Where the file system makes no hard links (FAT answers EPERM), Create
// still writes the file, still refuses an existing one, and leaves no
// temporary file.
func TestCreateWithoutHardLinks(t *testing.T) {
	defer func(old func(string, string) error) { link = old }(link)
	link = func(oldname, newname string) error {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EPERM}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.txt")
	if err := Create(path, []byte("whole"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, []byte("again"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v, want an error wrapping fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "whole" {
		t.Fatalf("the file holds %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d entries in the folder, want only the file", len(entries))
	}
}
