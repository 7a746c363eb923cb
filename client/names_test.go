package client

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestQuoteName(t *testing.T) {
	for in, want := range map[string]string{
		"photos/2025/beach.jpg": "photos/2025/beach.jpg",
		"with space":            "with space",
		"été ✓ 写真":              "été ✓ 写真",
		`back\slash`:            `back\slash`,
		`mid"quote`:             `mid"quote`,
		`"leading quote`:        `"\"leading quote"`,
		"a\nb":                  `"a\nb"`,
		"a\rb":                  `"a\rb"`,
		"\x1b[2J":               `"\x1b[2J"`,
		"bell\a":                `"bell\a"`,
		"tab\t":                 `"tab\t"`,
		"del\x7f":               `"del\x7f"`,
		"c1\u009b31m":           `"c1\u009b31m"`,
		"rlo\u202etxt.exe":      `"rlo\u202etxt.exe"`,
		"bad\xffutf8":           `"bad\xffutf8"`,
		"nbsp\u00a0":            `"nbsp\u00a0"`,
	} {
		if got := QuoteName(in); got != want {
			t.Errorf("QuoteName(%q) = %s, want %s", in, got, want)
		}
	}
}

// A name in a warning or an error of WriteBackup and RestoreBackup is
// escaped: it cannot fake a line of output or drive the terminal.
func TestNamesInMessagesAreEscaped(t *testing.T) {
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "src")
	os.Mkdir(src, 0o755)
	evil := "x\n\x1b[1Awarning: all good\xff"
	if err := syscall.Mkfifo(filepath.Join(src, evil), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/\x1b]0;t\a", filepath.Join(src, "link\r")); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(t.TempDir(), "top\u202e")
	os.WriteFile(top, []byte("x"), 0o644)
	var warnings []string
	var buf bytes.Buffer
	_, err := WriteBackup(&buf, rec, []string{src, top}, &BackupOptions{Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 2 {
		t.Fatalf("warnings: %q", warnings)
	}
	for _, w := range warnings {
		assertPrintable(t, w)
	}
	if !strings.Contains(warnings[0]+warnings[1], `x\n\x1b[1Awarning: all good\xff"`) ||
		!strings.Contains(warnings[0]+warnings[1], `"/etc/\x1b]0;t\a"`) {
		t.Errorf("warnings do not name the files escaped: %q", warnings)
	}

	dst := t.TempDir()
	if _, err := RestoreBackup(bytes.NewReader(buf.Bytes()), id, dst, nil); err != nil {
		t.Fatal(err)
	}
	_, err = RestoreBackup(bytes.NewReader(buf.Bytes()), id, dst, nil)
	if !errors.Is(err, ErrTargetExists) {
		t.Fatal(err)
	}
	assertPrintable(t, err.Error())
	if !strings.Contains(err.Error(), `src, "top\u202e"`) {
		t.Errorf("error does not name the clash escaped: %v", err)
	}

	// A filesystem error about such a name keeps what it wraps.
	blocker := filepath.Join(t.TempDir(), "f\n")
	os.WriteFile(blocker, nil, 0o644)
	_, err = RestoreBackup(bytes.NewReader(buf.Bytes()), id, filepath.Join(blocker, "sub"), nil)
	var pe *fs.PathError
	if err == nil || !errors.As(err, &pe) || !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("restore under a file: %v", err)
	}
	assertPrintable(t, err.Error())
}

func assertPrintable(t *testing.T, msg string) {
	t.Helper()
	if !plainName(strings.ReplaceAll(msg, `"`, "'")) {
		t.Errorf("message holds a raw control character or invalid UTF-8: %q", msg)
	}
}
