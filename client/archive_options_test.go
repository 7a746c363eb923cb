package client

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestExcludeMatch(t *testing.T) {
	cases := []struct {
		pattern, name, disk string
		want                bool
	}{
		{"*.log", "home/a/b.log", "/x/home/a/b.log", true},
		{"*.log", "home/a/b.log.txt", "/x/home/a/b.log.txt", false},
		{"cache", "home/cache", "/x/home/cache", true},
		{"cache", "home/a/cache", "/x/home/a/cache", true},
		{"cache", "home/cached", "/x/home/cached", false},
		{"cache/", "home/a/cache", "/x/home/a/cache", true},
		{"home/cache", "home/cache", "/x/home/cache", true},
		{"home/cache", "home/a/cache", "/x/home/a/cache", false}, // a path in the backup is anchored
		{"home/*/cache", "home/a/cache", "/x/home/a/cache", true},
		{"home/*/cache", "home/a/b/cache", "/x/home/a/b/cache", false},
		{"**/cache", "home/a/b/cache", "/x/home/a/b/cache", true},
		{"**/cache", "cache", "/x/cache", true}, // ** matches no element too
		{"home/**/*.o", "home/src/x/y.o", "/x/home/src/x/y.o", true},
		{"home/**/*.o", "home/y.o", "/x/home/y.o", true},
		{"home/**/**/*.o", "home/y.o", "/x/home/y.o", true},
		{"home/**", "home", "/x/home", true},
		{"/x/home/tmp", "home/tmp", "/x/home/tmp", true},
		{"/x/home/tmp", "home/tmp", "/y/home/tmp", false}, // absolute: the disk path
		{"/x/*/tmp", "home/tmp", "/x/home/tmp", true},
		{`\*`, "home/*", "/x/home/*", true},
		{`\*`, "home/a", "/x/home/a", false},
		{"[ab].txt", "home/b.txt", "/x/home/b.txt", true},
	}
	for _, c := range cases {
		x, err := ParseExcludes([]string{c.pattern})
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if _, got := x.Match(c.name, c.disk); got != c.want {
			t.Errorf("%q on %q (%s): %v, want %v", c.pattern, c.name, c.disk, got, c.want)
		}
	}
	for _, bad := range []string{"[", "a/[b", "", "/"} {
		if _, err := ParseExcludes([]string{bad}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	var none *Excludes
	if _, ok := none.Match("a", "/a"); ok {
		t.Error("no patterns matched")
	}
}

func TestReadExcludeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "excludes")
	os.WriteFile(p, []byte("# caches\n*.tmp\n\n  node_modules  \r\n#not/this\nhome/build\n"), 0o644)
	got, err := ReadExcludeFile(p)
	if err != nil || !slices.Equal(got, []string{"*.tmp", "node_modules", "home/build"}) {
		t.Fatalf("%q %v", got, err)
	}
}

// A backup says what it left out against the user's wish (LeftOut,
// Skipped) apart from what the patterns excluded; ScanBackup sees the
// same entries as WriteBackup, reading nothing.
func TestBackupExcludesAndLeavesOut(t *testing.T) {
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "home")
	for _, d := range []string{"docs", "cache/deep", "logs"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	writeFile(t, filepath.Join(src, "docs/a.txt"), []byte("keep"), 0o644)
	writeFile(t, filepath.Join(src, "docs/b.log"), []byte("drop"), 0o644)
	writeFile(t, filepath.Join(src, "cache/deep/c"), []byte("drop"), 0o644)
	writeFile(t, filepath.Join(src, "logs/keep.txt"), []byte("keep"), 0o644)
	os.Symlink("/etc/hostname", filepath.Join(src, "docs/abs"))
	syscall.Mkfifo(filepath.Join(src, "docs/pipe"), 0o600)
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	x, err := ParseExcludes([]string{"*.log", "home/cache"})
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	var excluded []string
	var written []Entry
	opts := &BackupOptions{
		Exclude:  x,
		Warn:     func(m string) { warned = append(warned, m) },
		Excluded: func(disk, pattern string) { excluded = append(excluded, disk+" "+pattern) },
		Entry:    func(e Entry) { written = append(written, e) },
	}
	file := filepath.Join(t.TempDir(), "b.age")
	st := backupTo(t, file, rec, []string{src}, opts)
	if st.Skipped != 3 || len(st.LeftOut) != 3 || st.Excluded != 2 || st.Files != 2 {
		t.Fatalf("stats %+v", st)
	}
	want := map[string]string{
		"docs/abs":  "a symlink to /etc/hostname: absolute target",
		"docs/pipe": "a named pipe, not a file, folder or symlink",
		"sock":      "a socket, not a file, folder or symlink",
	}
	for _, lo := range st.LeftOut {
		rel, _ := filepath.Rel(src, lo.Path)
		if want[rel] != lo.Reason {
			t.Errorf("left out %s: %q, want %q", rel, lo.Reason, want[rel])
		}
	}
	if len(warned) != 3 || !strings.Contains(strings.Join(warned, "\n"), "left out "+filepath.Join(src, "docs/pipe")+": a named pipe") {
		t.Errorf("warnings %q", warned)
	}
	slices.Sort(excluded)
	if !slices.Equal(excluded, []string{filepath.Join(src, "cache") + " home/cache", filepath.Join(src, "docs/b.log") + " *.log"}) {
		t.Errorf("excluded %q", excluded)
	}
	var listed []Entry
	if _, err := restoreFrom(file, id, t.TempDir(), &RestoreOptions{Entry: func(e Entry) { listed = append(listed, e) }}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range listed {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{"home", "home/docs", "home/docs/a.txt", "home/logs", "home/logs/keep.txt"}) {
		t.Errorf("the backup holds %q", names)
	}

	var scanned []Entry
	opts.Warn, opts.Excluded, opts.Entry = nil, nil, func(e Entry) { scanned = append(scanned, e) }
	sc, err := ScanBackup([]string{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	sc.Archive, sc.Payload = st.Archive, st.Payload
	if !slices.EqualFunc(scanned, written, func(a, b Entry) bool { return a == b }) || sc.Files != st.Files ||
		sc.Dirs != st.Dirs || sc.Bytes != st.Bytes || sc.Skipped != st.Skipped || sc.Excluded != st.Excluded {
		t.Errorf("scan %+v %v\nbackup %+v %v", sc, scanned, st, written)
	}
}

// Leftovers of killed runs are found by name and type, removed only when
// no process holds their lock, and other files of similar names are left
// alone.
func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := mk(".b.age.partial-123", ageHeaderPrefix+"-> X25519 …")
	empty := mk(".b.age.partial-124", "")
	held := mk(".c.age.partial-99", ageHeaderPrefix)
	notOurs := mk(".notes.partial-5", "my own notes")
	mk(".b.age.partial-x1", ageHeaderPrefix)
	mk("b.age.partial-7", ageHeaderPrefix)

	staleDir := filepath.Join(dir, ".coffer-restore-4242")
	os.MkdirAll(filepath.Join(staleDir, "home/ro"), 0o755)
	os.WriteFile(filepath.Join(staleDir, "home/ro/plain"), []byte("plaintext"), 0o600)
	os.Chmod(filepath.Join(staleDir, "home/ro"), 0o500)
	heldDir := filepath.Join(dir, ".coffer-restore-4343")
	os.Mkdir(heldDir, 0o700)
	oldReplaced := filepath.Join(dir, ".coffer-replaced-17")
	os.Mkdir(oldReplaced, 0o700)
	os.Mkdir(filepath.Join(dir, ".coffer-restore-mine"), 0o700)
	os.Symlink(dir, filepath.Join(dir, ".coffer-restore-55"))

	// Held: another open file description of the same file, locked, as
	// another process's is.
	for _, p := range []string{held, heldDir} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if ok, err := tryLock(f); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}

	look, err := BackupLeftovers(dir, false)
	if err != nil || len(look) != 3 {
		t.Fatalf("%+v %v", look, err)
	}
	for _, l := range look {
		if l.Removed || l.Held != (l.Path == held) {
			t.Errorf("without remove: %+v", l)
		}
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatal("looking removed", err)
	}
	got, err := BackupLeftovers(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range got {
		if (l.Path == held) != l.Held || (l.Path == held) == l.Removed {
			t.Errorf("%+v", l)
		}
	}
	got, err = RestoreLeftovers(dir, true)
	if err != nil || len(got) != 3 {
		t.Fatalf("%+v %v", got, err)
	}
	for _, l := range got {
		if (l.Path == heldDir) != l.Held || (l.Path == heldDir) == l.Removed {
			t.Errorf("%+v", l)
		}
		if l.Path == staleDir && l.Size != int64(len("plaintext")) {
			t.Errorf("%+v", l)
		}
	}
	for _, p := range []string{stale, empty, staleDir, oldReplaced} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
	for _, p := range []string{held, heldDir, notOurs, ".b.age.partial-x1", "b.age.partial-7", ".coffer-restore-mine", ".coffer-restore-55"} {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".coffer-restore-55", ".coffer-restore-mine")); err != nil {
		t.Error("followed a symlink named like a leftover")
	}
}

// A backup's own temporary file, and a restore's temporary folder, are
// held while they exist: a cleanup running meanwhile leaves them alone.
func TestOwnTemporariesAreHeld(t *testing.T) {
	dir := t.TempDir()
	f, err := CreatePartial(filepath.Join(dir, "b.age"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := BackupLeftovers(dir, true)
	if err != nil || len(got) != 1 || !got[0].Held || got[0].Path != f.Name() {
		t.Fatalf("%+v %v", got, err)
	}
	f.Close()
	if got, _ := BackupLeftovers(dir, true); len(got) != 1 || !got[0].Removed {
		t.Fatalf("closed (as if killed): %+v", got)
	}

	_, id, rec := testKey(t)
	plain := craft(t, rawEntry{typ: tar.TypeDir, name: "a/"}, rawEntry{typ: tar.TypeReg, name: "a/f", body: "x"})
	dst := t.TempDir()
	r := &hookReader{r: bytes.NewReader(encrypt(t, rec, plain)), hook: func() {
		got, err := RestoreLeftovers(dst, true)
		if err != nil || len(got) != 1 || !got[0].Held {
			t.Errorf("a running restore's folder: %+v %v", got, err)
		}
	}}
	if _, err := RestoreBackup(r, id, dst, nil); err != nil {
		t.Fatal(err)
	}
	if !r.done {
		t.Fatal("the hook did not run")
	}
	assertOnly(t, dst, "a")
}

// hookReader runs hook once, at its first read.
type hookReader struct {
	r    *bytes.Reader
	hook func()
	done bool
}

func (h *hookReader) Read(p []byte) (int, error) {
	if !h.done {
		h.done = true
		h.hook()
	}
	return h.r.Read(p)
}

// Partial restores: only the paths asked for, with the folders above
// them; folders already there are kept, the paths themselves are refused
// or (Force) replaced; a path not in the backup restores nothing.
func TestRestorePaths(t *testing.T) {
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "home")
	os.Mkdir(src, 0o755)
	makeTree(t, src, 0)
	file := filepath.Join(t.TempDir(), "b.age")
	backupTo(t, file, rec, []string{src}, nil)
	full := readTree(t, src)

	dst := t.TempDir()
	var listed []string
	st, err := restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"home/docs/deep/", "home/docs/deep/er"},
		Entry: func(e Entry) { listed = append(listed, e.Name) }})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Top, []string{"home/docs/deep"}) || st.Files != 1 || st.Dirs != 4 {
		t.Errorf("stats %+v", st)
	}
	if !slices.Equal(listed, []string{"home", "home/docs", "home/docs/deep", "home/docs/deep/er", "home/docs/deep/er/nested.bin"}) {
		t.Errorf("listed %q", listed)
	}
	got := readTree(t, filepath.Join(dst, "home"))
	for _, k := range []string{"docs/deep/er/nested.bin", "docs/deep/er", "docs/deep", "docs"} {
		if got[k] != full[k] {
			t.Errorf("%s: %+v, want %+v", k, got[k], full[k])
		}
	}
	if len(got) != 4 {
		t.Errorf("restored %d entries: %v", len(got), got)
	}
	assertOnly(t, dst, "home")

	// Into the folders now there: home and home/docs stay, with what
	// else they hold.
	writeFile(t, filepath.Join(dst, "home/docs/mine"), []byte("mine"), 0o644)
	listed = nil
	st, err = restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"home/docs/readme.txt", "home/ro"},
		Entry: func(e Entry) { listed = append(listed, e.Name) }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Dirs != 1 || st.Files != 2 || !slices.Equal(listed, []string{"home/docs/readme.txt", "home/ro", "home/ro/frozen"}) {
		t.Errorf("stats %+v, listed %q", st, listed)
	}
	got = readTree(t, filepath.Join(dst, "home"))
	for _, k := range []string{"docs/readme.txt", "ro", "ro/frozen", "docs/deep/er/nested.bin"} {
		if got[k] != full[k] {
			t.Errorf("%s: %+v, want %+v", k, got[k], full[k])
		}
	}
	if _, ok := got["docs/mine"]; !ok {
		t.Error("a file of the folder restored into is gone")
	}
	assertOnly(t, dst, "home")
	assertOnly(t, filepath.Join(dst, "home"), "docs", "ro")

	// Again: the path exists.
	writeFile(t, filepath.Join(dst, "home/docs/readme.txt"), []byte("changed"), 0o644)
	if _, err := restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"home/docs/readme.txt"}}); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "home/docs/readme.txt")); string(b) != "changed" {
		t.Error("replaced without Force")
	}
	st, err = restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"home/docs/readme.txt"}, Force: true})
	if err != nil || !slices.Equal(st.Replaced, []string{"home/docs/readme.txt"}) {
		t.Fatalf("%+v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "home/docs/readme.txt")); string(b) != "read me\n" {
		t.Errorf("Force: %q", b)
	}
	assertOnly(t, filepath.Join(dst, "home/docs"), "deep", "mine", "readme.txt")
	assertOnly(t, dst, "home")

	// Not in the backup; through a file; not a name.
	for _, c := range []struct {
		paths []string
		want  string
	}{
		{[]string{"home/docs/missing"}, "not in the backup: home/docs/missing"},
		{[]string{"home/bin", "nothing"}, "not in the backup: nothing"},
		{[]string{"../etc"}, "not a path in a backup"},
		{[]string{"/home"}, "not a path in a backup"},
		{[]string{"home/docs/readme.txt/x"}, "not in the backup"},
	} {
		if _, err := restoreFrom(file, id, dst, &RestoreOptions{Paths: c.paths}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.paths, err, c.want)
		}
	}
	os.Remove(filepath.Join(dst, "home/docs/mine"))
	os.WriteFile(filepath.Join(dst, "home/bin"), []byte("a file where a folder goes"), 0o644)
	if _, err := restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"home/bin/tool.sh"}}); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Errorf("through a file: %v", err)
	}
	assertOnly(t, filepath.Join(dst, "home"), "bin", "docs", "ro")
	assertOnly(t, dst, "home")
}

// A hard link into the selection whose file is not selected cannot be
// made: refused, nothing restored.
func TestRestorePathsHardLinkOutside(t *testing.T) {
	_, id, rec := testKey(t)
	plain := craft(t, rawEntry{typ: tar.TypeDir, name: "a/"}, rawEntry{typ: tar.TypeReg, name: "a/f", body: "x"},
		rawEntry{typ: tar.TypeDir, name: "b/"}, rawEntry{typ: tar.TypeLink, name: "b/h", linkname: "a/f"})
	file := filepath.Join(t.TempDir(), "b.age")
	os.WriteFile(file, encrypt(t, rec, plain), 0o600)
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"b"}}); err == nil || !strings.Contains(err.Error(), "restore it too") {
		t.Fatalf("%v", err)
	}
	notThere(t, dst)
	if _, err := restoreFrom(file, id, dst, &RestoreOptions{Paths: []string{"b", "a/f"}}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(dst, "a/f"))
	b, _ := os.Stat(filepath.Join(dst, "b/h"))
	if !os.SameFile(a, b) {
		t.Error("not a hard link")
	}
}

func notThere(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists", p)
	}
}

// A dry run reads and checks everything a restore does, and writes
// nothing: not the folder, not a temporary one.
func TestRestoreDryRun(t *testing.T) {
	_, id, rec := testKey(t)
	src := filepath.Join(t.TempDir(), "home")
	os.Mkdir(src, 0o755)
	makeTree(t, src, 0)
	file := filepath.Join(t.TempDir(), "b.age")
	backupTo(t, file, rec, []string{src}, nil)

	dst := filepath.Join(t.TempDir(), "new")
	var listed []string
	st, err := restoreFrom(file, id, dst, &RestoreOptions{DryRun: true, Entry: func(e Entry) { listed = append(listed, e.Name) }})
	if err != nil || st.Files != 6 || len(listed) != 13 {
		t.Fatalf("%+v %q %v", st, listed, err)
	}
	notThere(t, dst)

	os.Mkdir(dst, 0o755)
	os.Mkdir(filepath.Join(dst, "home"), 0o755)
	if _, err := restoreFrom(file, id, dst, &RestoreOptions{DryRun: true}); !errors.Is(err, ErrTargetExists) {
		t.Fatalf("dry run over an existing folder: %v", err)
	}
	st, err = restoreFrom(file, id, dst, &RestoreOptions{DryRun: true, Force: true, Paths: []string{"home/bin"}})
	if err != nil || len(st.Replaced) != 0 || st.Dirs != 1 {
		t.Fatalf("%+v %v", st, err)
	}
	assertOnly(t, dst, "home")
	assertOnly(t, filepath.Join(dst, "home"))

	// A damaged file fails the dry run as it fails the restore.
	b, _ := os.ReadFile(file)
	b[len(b)/2] ^= 1
	if _, err := RestoreBackup(bytes.NewReader(b), id, dst, &RestoreOptions{DryRun: true}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("damaged: %v", err)
	}
	if _, err := ReadBackup(bytes.NewReader(b), id, nil); !errors.Is(err, ErrDamaged) {
		t.Fatalf("ReadBackup damaged: %v", err)
	}
}

// ReadBackup (ls, verify) refuses exactly what a restore refuses.
func TestReadBackupRefusesWhatRestoreRefuses(t *testing.T) {
	_, id, rec := testKey(t)
	for name, plain := range craftedCases(t, "/tmp/coffer-outside") {
		data := encrypt(t, rec, plain)
		_, rerr := RestoreBackup(bytes.NewReader(data), id, filepath.Join(t.TempDir(), "out"), nil)
		_, lerr := ReadBackup(bytes.NewReader(data), id, nil)
		if rerr == nil || lerr == nil {
			t.Errorf("%s: restore %v, read %v", name, rerr, lerr)
		}
	}
}

// matchNaive is matchElems by recursion, the obvious reading of "**".
func matchNaive(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchNaive(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, _ := path.Match(pat[0], name[0])
	return ok && matchNaive(pat[1:], name[1:])
}

// FuzzExcludes: any pattern either parses or is refused, and matching
// never panics and agrees with the recursive reading of "**".
func FuzzExcludes(f *testing.F) {
	f.Add("**/a/*.o", "x/a/b.o")
	f.Add("*.log", "home/b.log")
	f.Add("/x/**/tmp", "home/tmp")
	f.Add("a/**/**/b/**", "a/b/c/b")
	f.Add("[", "a")
	f.Add(`\*`, "*")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		x, err := ParseExcludes([]string{pattern})
		if err != nil {
			return
		}
		x.Match(name, "/"+name)
		if strings.Count(pattern, "/") > 8 || strings.Count(name, "/") > 12 {
			return // the naive reading is exponential
		}
		p, nm := strings.Split(pattern, "/"), strings.Split(name, "/")
		for _, el := range p {
			if _, err := path.Match(el, ""); err != nil {
				return
			}
		}
		if got, want := matchElems(p, nm), matchNaive(p, nm); got != want {
			t.Fatalf("%q on %q: %v, recursion says %v", pattern, name, got, want)
		}
	})
}
