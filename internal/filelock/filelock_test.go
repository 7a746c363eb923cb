package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestTryLockNamesTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "pid " + strconv.Itoa(os.Getpid()) + ": "; !strings.HasPrefix(string(b), want) {
		t.Fatalf("lock file holds %q, want it to start with %q", b, want)
	}
	// A second lock, even from this process, is refused and names us.
	_, err = TryLock(path)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second TryLock: %v", err)
	}
	unlock()
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatalf("unlocked file still holds %q", b)
	}
	unlock2, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock after unlock: %v", err)
	}
	unlock2()
}

func TestLockWaitsForTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(path); !errors.Is(err, ErrHeld) {
		t.Fatalf("TryLock while Lock held: %v", err)
	}
	unlock()
	unlock, err = TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

// What a holder wrote is printed on one line, escaped if it is not plain
// text (a state folder's name may hold a newline or a terminal escape).
func TestHolderIsPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"pid 7: softvault serve\n": "pid 7: softvault serve",
		"pid 7: a\nfake line\n":    `"pid 7: a\nfake line"`,
		"pid 7: \x1b[2Jcleared":    `"pid 7: \x1b[2Jcleared"`,
		"pid 7: \xff":              `"pid 7: \xff"`,
		"pid 7: état":              "pid 7: état",
	} {
		if got := readableHolder([]byte(in)); got != want {
			t.Errorf("readableHolder(%q) = %s, want %s", in, got, want)
		}
	}
}
