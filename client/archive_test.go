package client

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
)

// testIdentity is a fixed key for archive tests.
func testKey(t testing.TB) (*BackupKey, *age.X25519Identity, *age.X25519Recipient) {
	t.Helper()
	k := mustKey(t, vectorKeys()[3])
	id, err := k.AgeIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return k, id, id.Recipient()
}

var mtime = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func writeFile(t testing.TB, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// makeTree builds a folder with what a backup must keep: files of several
// modes, an empty file, nested and read-only folders, a relative symlink,
// and a large sparse-ish file. It also holds what a backup must leave out:
// a symlink pointing outside, and a named pipe.
func makeTree(t testing.TB, root string, large int64) {
	t.Helper()
	for _, d := range []string{"docs", "docs/deep", "docs/deep/er", "bin", "ro"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "docs/readme.txt"), []byte("read me\n"), 0o644)
	writeFile(t, filepath.Join(root, "docs/secret"), []byte("only mine"), 0o600)
	writeFile(t, filepath.Join(root, "docs/empty"), nil, 0o640)
	writeFile(t, filepath.Join(root, "docs/deep/er/nested.bin"), bytes.Repeat([]byte{0, 1, 2, 255}, 5000), 0o644)
	writeFile(t, filepath.Join(root, "bin/tool.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	writeFile(t, filepath.Join(root, "ro/frozen"), []byte("cannot change"), 0o444)
	if err := os.Symlink("../docs/readme.txt", filepath.Join(root, "bin/readme-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "bin/outside")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "bin/pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	if large > 0 {
		// Mostly a hole, with data at the start, in the middle and at
		// the end.
		f, err := os.Create(filepath.Join(root, "docs/large.img"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(large); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, large / 2, large - 4096} {
			if _, err := f.WriteAt(bytes.Repeat([]byte(fmt.Sprint(off)), 4096/len(fmt.Sprint(off))), off); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	for _, d := range []string{"docs/deep/er", "docs/deep", "docs", "bin"} {
		os.Chtimes(filepath.Join(root, d), mtime, mtime)
	}
	if err := os.Chmod(filepath.Join(root, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "ro"), 0o755) })
}

type treeEntry struct {
	Mode   fs.FileMode
	Size   int64
	Sum    [32]byte
	Target string
	MTime  int64
}

// readTree describes everything under root, streaming file contents
// through SHA-256.
func readTree(t testing.TB, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := treeEntry{Mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			e.Size, e.MTime = fi.Size(), fi.ModTime().Unix()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			copy(e.Sum[:], h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Target, _ = os.Readlink(p)
		case fi.IsDir():
			e.MTime = fi.ModTime().Unix()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func backupTo(t testing.TB, path string, rec age.Recipient, paths []string, opts *BackupOptions) *BackupStats {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := WriteBackup(f, rec, paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func restoreFrom(path string, id age.Identity, dir string, opts *RestoreOptions) (*RestoreStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return RestoreBackup(f, id, dir, opts)
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	large := int64(96 << 20)
	if testing.Short() {
		large = 4 << 20
	}
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "home")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	makeTree(t, src, large)
	extra := filepath.Join(t.TempDir(), "notes.txt")
	writeFile(t, extra, []byte("a single file\n"), 0o600)

	var warnings []string
	var progress int64
	file := filepath.Join(t.TempDir(), "backup.age")
	st := backupTo(t, file, rec, []string{src, extra}, &BackupOptions{
		Warn:     func(m string) { warnings = append(warnings, m) },
		Progress: func(n int64) { progress += n },
	})
	if st.Files != 8 || st.Dirs != 6 || st.Symlinks != 1 || st.Skipped != 2 {
		t.Errorf("stats %+v, want 8 files, 6 folders, 1 symlink, 2 skipped", st)
	}
	if progress != st.Bytes || progress < large {
		t.Errorf("progress reported %d bytes, backup read %d", progress, st.Bytes)
	}
	if len(warnings) != 2 || !strings.Contains(strings.Join(warnings, "\n"), "outside") || !strings.Contains(strings.Join(warnings, "\n"), "pipe") {
		t.Errorf("warnings: %q", warnings)
	}
	if fi, _ := os.Stat(file); large > 0 && fi.Size() < large {
		t.Errorf("backup of %d bytes is smaller than its content", fi.Size())
	}

	dst := filepath.Join(t.TempDir(), "restored", "here")
	rs, err := restoreFrom(file, id, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "home/ro"), 0o755) })
	if !slices.Equal(rs.Top, []string{"home", "notes.txt"}) || rs.Files != 8 || rs.Symlinks != 1 || rs.Bytes != st.Bytes {
		t.Errorf("restore stats %+v", rs)
	}

	want := readTree(t, src)
	delete(want, "bin/outside")
	delete(want, "bin/pipe")
	got := readTree(t, filepath.Join(dst, "home"))
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing after restore", name)
			continue
		}
		if g != w {
			t.Errorf("%s: restored %+v, was %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s restored but was not backed up", name)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "notes.txt")); err != nil || string(b) != "a single file\n" {
		t.Errorf("notes.txt: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "home/ro")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("read-only folder restored as %v (%v)", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 2 {
		t.Errorf("restore folder holds %d entries (temporary folder left?)", len(entries))
	}
}

func TestBackupRefusesClashingNames(t *testing.T) {
	_, _, rec := testKey(t)
	a := filepath.Join(t.TempDir(), "same")
	b := filepath.Join(t.TempDir(), "same")
	os.Mkdir(a, 0o700)
	os.Mkdir(b, 0o700)
	if _, err := WriteBackup(io.Discard, rec, []string{a, b}, nil); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("two top-level %q accepted: %v", "same", err)
	}
	if _, err := WriteBackup(io.Discard, rec, []string{"/"}, nil); err == nil {
		t.Error("backup of / accepted")
	}
	if _, err := WriteBackup(io.Discard, rec, nil, nil); err == nil {
		t.Error("empty backup accepted")
	}
}

// The backup leaves out its own output when written inside what it backs up:
// excluded, not an entry it failed to back up.
func TestBackupSkipsItsOwnOutput(t *testing.T) {
	_, id, rec := testKey(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), []byte("a"), 0o644)
	out, err := os.Create(filepath.Join(src, "b.age"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := out.Stat()
	st, err := WriteBackup(out, rec, []string{src}, &BackupOptions{Skip: []os.FileInfo{fi}})
	out.Close()
	if err != nil || st.Files != 1 || st.Skipped != 0 || st.Excluded != 1 {
		t.Fatalf("%+v %v", st, err)
	}
	dst := t.TempDir()
	if _, err := restoreFrom(filepath.Join(src, "b.age"), id, dst, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, filepath.Base(src), "b.age")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the output went into itself: %v", err)
	}
}

func TestRestoreRefusesToOverwrite(t *testing.T) {
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "data")
	os.Mkdir(src, 0o755)
	writeFile(t, filepath.Join(src, "f"), []byte("from the backup"), 0o644)
	file := filepath.Join(t.TempDir(), "b.age")
	backupTo(t, file, rec, []string{src}, nil)

	dst := t.TempDir()
	os.Mkdir(filepath.Join(dst, "data"), 0o755)
	writeFile(t, filepath.Join(dst, "data/f"), []byte("mine"), 0o644)
	writeFile(t, filepath.Join(dst, "data/only-here"), []byte("mine too"), 0o644)
	writeFile(t, filepath.Join(dst, "unrelated"), []byte("keep"), 0o644)

	_, err := restoreFrom(file, id, dst, nil)
	if !errors.Is(err, ErrTargetExists) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over an existing folder: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "data/f")); string(b) != "mine" {
		t.Error("existing file changed")
	}
	assertOnly(t, dst, "data", "unrelated")

	if _, err := restoreFrom(file, id, dst, &RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "data/f")); string(b) != "from the backup" {
		t.Errorf("--force did not replace: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dst, "data/only-here")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("--force merged instead of replacing the folder")
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "unrelated")); string(b) != "keep" {
		t.Error("--force touched an unrelated file")
	}
	assertOnly(t, dst, "data", "unrelated")
}

// assertOnly checks dir holds exactly names (no temporary folder left).
func assertOnly(t testing.TB, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) && len(names) == 0 {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// tampered cases: each gives a clear error and leaves no target and no
// temporary folder behind.
func TestRestoreRejectsTamperedFiles(t *testing.T) {
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "data")
	os.Mkdir(src, 0o755)
	// 3 chunks of age payload and a bit: damage can hit a middle chunk
	// or the last one, after every entry was already extracted.
	writeFile(t, filepath.Join(src, "big"), bytes.Repeat([]byte("0123456789abcdef"), 3*4096+100), 0o644)
	writeFile(t, filepath.Join(src, "small"), []byte("tiny"), 0o644)
	var buf bytes.Buffer
	if _, err := WriteBackup(&buf, rec, []string{src}, nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	header, err := age.ExtractHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	payload := len(header) + 16 // after the header and the payload nonce
	const chunk = 64<<10 + 16

	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	other, _ := NewBackupKey(nil)
	otherID, _ := other.AgeIdentity()
	for _, tc := range []struct {
		name string
		file []byte
		id   age.Identity
		want error
	}{
		{"bit flip in the header MAC", flip(len(header) - 5), id, ErrDamaged},
		{"bit flip in the first chunk", flip(payload + 100), id, ErrDamaged},
		{"bit flip in the second chunk", flip(payload + chunk + 7), id, ErrDamaged},
		{"bit flip in the last byte", flip(len(good) - 1), id, ErrDamaged},
		{"truncated to the header", good[:len(header)], id, ErrDamaged},
		{"truncated mid-chunk", good[:payload+chunk+500], id, ErrDamaged},
		{"truncated at a chunk boundary", good[:payload+2*chunk], id, ErrDamaged},
		{"last byte missing", good[:len(good)-1], id, ErrDamaged},
		{"trailing garbage", append(bytes.Clone(good), 'x'), id, ErrDamaged},
		{"empty file", nil, id, ErrDamaged},
		{"not an age file", []byte("hello, world\n"), id, ErrDamaged},
		{"wrong key", good, otherID, ErrWrongKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "out")
			_, err := RestoreBackup(bytes.NewReader(tc.file), tc.id, dst, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want == ErrDamaged && !strings.Contains(err.Error(), "nothing was restored") && !strings.Contains(err.Error(), "damaged") {
				t.Errorf("unclear error: %v", err)
			}
			t.Logf("%v", err)
			assertOnly(t, parent) // not even the target folder
		})
	}
	// The good file restores, so the cases above failed for their damage.
	if _, err := RestoreBackup(bytes.NewReader(good), id, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
}

// rawEntry is one tar header of a crafted archive, and its content.
type rawEntry struct {
	typ      byte
	name     string
	linkname string
	body     string
}

func craft(t testing.TB, entries ...rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.linkname, Mode: 0o644, Size: int64(len(e.body)), ModTime: mtime, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, Name: e.name, PAXRecords: map[string]string{"comment": "global"}}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("crafting %q: %v", e.name, err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func encrypt(t testing.TB, rec age.Recipient, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rec)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// craftedCases are archives a restore must refuse as a whole.
func craftedCases(t testing.TB, outside string) map[string][]byte {
	reg := func(name, body string) rawEntry { return rawEntry{typ: tar.TypeReg, name: name, body: body} }
	dir := func(name string) rawEntry { return rawEntry{typ: tar.TypeDir, name: name + "/"} }
	sym := func(name, target string) rawEntry {
		return rawEntry{typ: tar.TypeSymlink, name: name, linkname: target}
	}
	hard := func(name, target string) rawEntry { return rawEntry{typ: tar.TypeLink, name: name, linkname: target} }
	rel, _ := filepath.Rel("/", outside)
	return map[string][]byte{
		"dot-dot":                     craft(t, reg("../x", "escape")),
		"dot-dot inside":              craft(t, dir("a"), reg("a/../../x", "escape")),
		"absolute":                    craft(t, reg(outside+"/abs", "escape")),
		"symlink to absolute":         craft(t, sym("link", outside)),
		"symlink outside, then file":  craft(t, sym("link", "../../../../../../../../"+rel), reg("link/x", "escape")),
		"symlink up one level":        craft(t, dir("a"), sym("a/l", "../..")),
		"symlink inside, then file":   craft(t, dir("a"), sym("l", "a"), reg("l/x", "through a link")),
		"symlink through a symlink":   craft(t, dir("d"), sym("d/up", ".."), sym("l2", "d/up/..")),
		"hard link outside":           craft(t, hard("h", "../../../../../../../../"+rel+"/victim")),
		"hard link absolute":          craft(t, hard("h", outside+"/victim")),
		"hard link to later file":     craft(t, hard("h", "f"), reg("f", "x")),
		"hard link to folder":         craft(t, dir("a"), hard("h", "a")),
		"hard link to symlink":        craft(t, sym("s", "f"), hard("h", "s")),
		"file without its folder":     craft(t, reg("nodir/x", "x")),
		"file under a file":           craft(t, reg("f", "x"), reg("f/x", "x")),
		"duplicate":                   craft(t, reg("f", "one"), reg("f", "two")),
		"folder then file same name":  craft(t, dir("a"), reg("a", "x")),
		"fifo":                        craft(t, rawEntry{typ: tar.TypeFifo, name: "p"}),
		"char device":                 craft(t, rawEntry{typ: tar.TypeChar, name: "c"}),
		"block device":                craft(t, rawEntry{typ: tar.TypeBlock, name: "b"}),
		"empty name element":          craft(t, dir("a"), reg("a//x", "x")),
		"dot element":                 craft(t, dir("a"), reg("a/./x", "x")),
		"data after the end":          append(craft(t, reg("f", "x")), bytes.Repeat([]byte{'!'}, 512)...),
		"not a tar":                   []byte("this is not an archive at all, but it is long enough to look at it. " + strings.Repeat("x", 600)),
		"global header":               craft(t, rawEntry{typ: tar.TypeXGlobalHeader, name: "g"}),
		"symlink empty target":        craft(t, sym("s", "")),
		"dot-dot after symlink climb": craft(t, dir("a"), sym("a/l", "../a/../..")),
	}
}

func TestRestoreRefusesCraftedArchives(t *testing.T) {
	_, id, rec := testKey(t)
	for name, plain := range craftedCases(t, "/nonexistent") {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			os.Mkdir(outside, 0o755)
			writeFile(t, filepath.Join(outside, "victim"), []byte("victim"), 0o644)
			// Rebuild with this test's own outside folder.
			plain := craftedCases(t, outside)[name]
			dst := filepath.Join(parent, "out")
			_, err := RestoreBackup(bytes.NewReader(encrypt(t, rec, plain)), id, dst, nil)
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("got %v, want ErrBadArchive", err)
			}
			t.Logf("%v", err)
			assertOnly(t, parent, "outside")
			assertOnly(t, outside, "victim")
			if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "victim" {
				t.Error("victim changed")
			}
		})
		_ = plain
	}
}

// What the rules do allow: links that stay inside, in any order a tar
// writer produces, and stock tar's zero padding.
func TestRestoreAcceptsSafeLinks(t *testing.T) {
	_, id, rec := testKey(t)
	plain := craft(t,
		rawEntry{typ: tar.TypeDir, name: "a/"},
		rawEntry{typ: tar.TypeReg, name: "a/f", body: "content"},
		rawEntry{typ: tar.TypeLink, name: "a/hard", linkname: "a/f"},
		rawEntry{typ: tar.TypeSymlink, name: "a/up", linkname: "../b"}, // dangling, but inside
		rawEntry{typ: tar.TypeSymlink, name: "top", linkname: "a/f"},
		rawEntry{typ: tar.TypeSymlink, name: "self", linkname: "."},
	)
	plain = append(plain, make([]byte, 10240)...) // tar's record padding
	dst := t.TempDir()
	st, err := RestoreBackup(bytes.NewReader(encrypt(t, rec, plain)), id, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Links != 1 || st.Symlinks != 3 || st.Files != 1 {
		t.Errorf("stats %+v", st)
	}
	a, _ := os.Stat(filepath.Join(dst, "a/f"))
	b, _ := os.Stat(filepath.Join(dst, "a/hard"))
	if !os.SameFile(a, b) {
		t.Error("hard link not restored as one")
	}
	if got, _ := os.Readlink(filepath.Join(dst, "top")); got != "a/f" {
		t.Errorf("symlink target %q", got)
	}
}

func TestCheckSymlink(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		ok           bool
	}{
		{"l", "x", true},
		{"l", ".", true},
		{"l", "./x", true},
		{"l", "..", false},
		{"l", "../x", false},
		{"a/l", "../x", true},
		{"a/l", "../..", false},
		{"a/b/l", "../../x/y", true},
		{"a/b/l", "../../../x", false},
		{"a/l", "x/../..", false},
		{"a/l", "x/..", false},
		{"a/l", "/x", false},
		{"a/l", "", false},
		{"a/l", "x\x00", false},
	} {
		if err := checkSymlink(tc.name, tc.target); (err == nil) != tc.ok {
			t.Errorf("checkSymlink(%q, %q) = %v, want ok=%v", tc.name, tc.target, err, tc.ok)
		}
	}
}
