package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

// hostileNames would, printed raw, fake output lines, move the cursor,
// clear the screen, set the terminal's title, reverse the text after them,
// or not be text at all.
var hostileNames = []string{
	"a\nRestored 9999 files",
	"b\r\x1b[2Kfake progress",
	"c\x1b]0;pwned\x07",
	"d\xff\xfe",
	"e\u202egnp.exe",
}

// assertEscaped fails if out holds a raw control character other than the
// line ends of its own lines, a format character or invalid UTF-8: every
// name must have been escaped on its way out.
func assertEscaped(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s is not valid UTF-8: %q", what, out)
	}
	for _, bad := range []string{"\r", "\x1b", "\x07", "\u202e", "\nRestored 9999"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s holds a raw %q: %q", what, bad, out)
		}
	}
}

// Names from the filesystem (left-out files, the output path) and from a
// backup (its top-level entries, on restore and when they clash) are
// printed escaped, and ordinary names as they are.
func TestHostileNamesAreEscaped(t *testing.T) {
	e := newEnv(t)
	key := shownKey(t, e.ok("init").stdout)

	// Backup: named pipes are left out with a warning naming each (and
	// exit status 3).
	src := filepath.Join(t.TempDir(), "src")
	os.Mkdir(src, 0o755)
	var tops []string
	for _, n := range hostileNames {
		if err := syscall.Mkfifo(filepath.Join(src, n+".fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), n)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		tops = append(tops, p)
	}
	os.WriteFile(filepath.Join(src, "plain name.txt"), []byte("x"), 0o644)
	out := filepath.Join(t.TempDir(), "out\x1b[2J.age")
	r := e.run(append([]string{"backup", src, "-o", out}, tops...)...)
	if r.code != 3 { // made, but incomplete: the pipes are left out
		t.Fatalf("backup with named pipes: exit %d, want 3\n%s", r.code, r.stderr)
	}
	assertEscaped(t, "backup's output", r.stdout+r.stderr)
	if !strings.Contains(r.stderr, `a\nRestored 9999 files.fifo`) || !strings.Contains(r.stderr, `out\x1b[2J.age`) {
		t.Errorf("backup does not name the files escaped:\n%s", r.stderr)
	}
	// The same in --json: JSON strings, nothing raw.
	r = e.run(append([]string{"backup", src, "-o", out + ".json", "--json"}, tops...)...)
	assertEscaped(t, "backup's JSON", r.stdout)
	var sum struct {
		LeftOut []struct{ Path string } `json:"left_out"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || len(sum.LeftOut) != len(hostileNames) {
		t.Fatalf("backup --json: %v\n%s", err, r.stdout)
	}
	for i, n := range hostileNames {
		// strings.Map makes each byte that is not UTF-8 a U+FFFD, as JSON does.
		if want := strings.Map(func(r rune) rune { return r }, filepath.Join(src, n+".fifo")); sum.LeftOut[i].Path != want {
			t.Errorf("JSON names %q, want %q", sum.LeftOut[i].Path, want)
		}
	}

	// Restore: the summary lists the top-level entries; restoring again
	// names them as the ones that would be overwritten.
	dst := t.TempDir()
	r = e.ok("restore", out, "-C", dst, "--key", key)
	assertEscaped(t, "restore's output", r.stdout+r.stderr)
	if !strings.Contains(r.stderr, `"d\xff\xfe"`) || !strings.Contains(r.stderr, ": src, ") {
		t.Errorf("restore summary:\n%s", r.stderr)
	}
	r = e.fails("--force", "restore", out, "-C", dst, "--key", key)
	assertEscaped(t, "refused restore's output", r.stdout+r.stderr)
	if !strings.Contains(r.stderr, `"e\u202egnp.exe"`) {
		t.Errorf("refused restore:\n%s", r.stderr)
	}

	// An error from the filesystem about a path holding a hostile name.
	blocker := filepath.Join(t.TempDir(), "f\x1b[31m")
	os.WriteFile(blocker, nil, 0o644)
	r = e.fails("not a directory", "restore", out, "-C", filepath.Join(blocker, "sub"), "--key", key)
	assertEscaped(t, "failed restore's output", r.stdout+r.stderr)
	r = e.fails("not a backup", "restore", blocker, "--key", key)
	assertEscaped(t, "not-a-backup output", r.stdout+r.stderr)
}
