package main

// End-to-end tests of what users of restic, borg and age expect of a
// backup tool (issue 12): a distinct exit status for an incomplete backup,
// exclusions, looking into a backup without restoring it, partial and dry
// restores, cleanup after a killed run, padded sizes, JSON summaries, and
// a progress bar that leaves the terminal clean. The real coffer binary,
// as a user runs it, in key mode (no vault needed).

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"

	"github.com/cofferhsm/coffer/client"
)

// keyUser is a user in key mode: init done, COFFER_KEY set, so restore,
// ls and verify need no prompt.
func keyUser(t *testing.T) (*user, string) {
	t.Helper()
	u := newUser(t)
	key := shownKey64(t, u.ok("init").stdout)
	u.env["COFFER_KEY"] = key
	return u, key
}

// entryJSON is an entry of --json output as README.md documents it.
type entryJSON struct {
	Type   string `json:"type"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime"`
	Path   string `json:"path"`
	Target string `json:"target"`
}

// padme is client/SPEC.md's padded length, written out again here.
func padme(l int64) int64 {
	if l < 2 {
		return l
	}
	e := 0
	for int64(1)<<(e+1) <= l {
		e++
	}
	s := 0
	for 1<<s <= e {
		s++
	}
	mask := int64(1)<<(e-s) - 1
	return (l + mask) &^ mask
}

func decodeJSON[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", out)
	}
	return v
}

// #3: a backup that leaves entries out exits 3, naming each on standard
// error and in --json; --exclude and --exclude-file leave entries out on
// purpose, which is not incomplete (exit 0).
func TestE2EIncompleteBackupExitsThree(t *testing.T) {
	u, _ := keyUser(t)
	src := sourceTree(t)
	pipe := filepath.Join(src, "pipe")
	link := filepath.Join(src, "etc-link")
	sock := filepath.Join(src, "sock")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", link); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	out := t.TempDir()
	backup := filepath.Join(out, "b.age")
	srcInfo, _ := os.Stat(src)
	r := u.run("backup", src, "-o", backup)
	if r.code != 3 {
		t.Fatalf("a backup that left 3 entries out: exit %d, want 3\n%s", r.code, r.stderr)
	}
	for _, w := range []string{
		"left out " + pipe + ": a named pipe",
		"left out " + link + ": a symlink to /etc/hostname: absolute target",
		"left out " + sock + ": a socket",
		"incomplete: 3 left out",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	// What it holds is restorable all the same.
	dst := filepath.Join(t.TempDir(), "restored")
	u.ok("restore", backup, "-C", dst)
	for _, p := range []string{pipe, link, sock} {
		os.Remove(p)
	}
	os.Chtimes(src, srcInfo.ModTime(), srcInfo.ModTime())
	sameTree(t, src, filepath.Join(dst, "documents"))
	syscall.Mkfifo(pipe, 0o600)
	os.Symlink("/etc/hostname", link)
	l.Close()
	if l, err = net.Listen("unix", sock); err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	type leftOut struct{ Path, Reason string }
	type summary struct {
		Command      string      `json:"command"`
		DryRun       bool        `json:"dry_run"`
		Output       string      `json:"output"`
		Size         int64       `json:"size"`
		Recipient    string      `json:"recipient"`
		Complete     bool        `json:"complete"`
		Files        int         `json:"files"`
		Dirs         int         `json:"dirs"`
		Symlinks     int         `json:"symlinks"`
		Bytes        int64       `json:"bytes"`
		Excluded     int         `json:"excluded"`
		LeftOutCount int         `json:"left_out_count"`
		LeftOut      []leftOut   `json:"left_out"`
		ArchiveBytes int64       `json:"archive_bytes"`
		PayloadBytes int64       `json:"payload_bytes"`
		Leftovers    []any       `json:"leftovers"`
		Entries      []entryJSON `json:"entries"`
	}
	backup2 := filepath.Join(out, "b2.age")
	r = u.run("backup", src, "-o", backup2, "--json")
	if r.code != 3 {
		t.Fatalf("--json: exit %d, want 3\n%s", r.code, r.stderr)
	}
	s := decodeJSON[summary](t, r.stdout)
	var paths []string
	for _, lo := range s.LeftOut {
		paths = append(paths, lo.Path)
	}
	slices.Sort(paths)
	fi, _ := os.Stat(backup2)
	if s.Command != "backup" || s.Complete || s.LeftOutCount != 3 || !slices.Equal(paths, []string{link, pipe, sock}) ||
		s.Files != 6 || s.Symlinks != 2 || s.Output != backup2 || fi == nil || s.Size != fi.Size() ||
		s.PayloadBytes != padme(s.ArchiveBytes) {
		t.Errorf("JSON summary %+v", s)
	}

	// Left out on purpose: not incomplete.
	exFile := filepath.Join(t.TempDir(), "excludes")
	os.WriteFile(exFile, []byte("# sockets and text\nsock\n*.txt\n"), 0o644)
	backup3 := filepath.Join(out, "b3.age")
	r = u.run("backup", src, "-o", backup3, "--json", "--exclude", "pipe", "--exclude", "documents/etc-link", "--exclude-file", exFile)
	if r.code != 0 {
		t.Fatalf("everything left out excluded: exit %d\n%s", r.code, r.stderr)
	}
	s = decodeJSON[summary](t, r.stdout)
	if !s.Complete || s.Excluded != 5 || s.LeftOutCount != 0 || len(s.LeftOut) != 0 || s.Files != 4 {
		t.Errorf("excluded: %+v", s)
	}
	listing := u.ok("ls", backup3).stdout
	for _, gone := range []string{"pipe", "sock", "etc-link", "notes.txt", "photos/2025/été à la plage.txt"} {
		if strings.Contains(listing, " documents/"+gone+"\n") {
			t.Errorf("ls of the backup shows excluded %s:\n%s", gone, listing)
		}
	}
	if !strings.Contains(listing, "documents/private/diary.md") {
		t.Errorf("ls lacks what was not excluded:\n%s", listing)
	}
	r = u.run("backup", src, "-o", filepath.Join(out, "b4.age"), "--exclude", "[")
	if r.code != 2 || !strings.Contains(r.stderr, "syntax error in pattern") {
		t.Errorf("a bad pattern: exit %d\n%s", r.code, r.stderr)
	}
	notExist(t, filepath.Join(out, "b4.age"))
}

// #4: ls and verify look into a backup without restoring it: they need K
// as restore does, read and authenticate the whole file, write nothing,
// and fail (exit 1) on any damage or unacceptable entry.
func TestE2ELsAndVerify(t *testing.T) {
	u, key := keyUser(t)
	src := sourceTree(t)
	out := t.TempDir()
	backup := filepath.Join(out, "b.age")
	u.ok("backup", src, "-o", backup)

	want := snapshot(t, src)
	listing := u.ok("ls", backup).stdout
	lines := strings.Split(strings.TrimSuffix(listing, "\n"), "\n")
	if len(lines) != len(want) {
		t.Errorf("ls: %d lines for %d entries:\n%s", len(lines), len(want), listing)
	}
	reLine := regexp.MustCompile(`^([-dlh])([-rwx]{9}) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) (.+)$`)
	for _, line := range lines {
		m := reLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("ls line %q", line)
		}
		name, target, _ := strings.Cut(m[5], " -> ")
		e, ok := want[name]
		if !ok {
			t.Errorf("ls shows %q, not in the source", name)
			continue
		}
		kind := map[string]string{"d": "dir", "-": "file", "l": "symlink"}[m[1]]
		if kind != e.kind || (kind != "symlink" && m[2] != e.perm.String()[1:]) || target != e.target ||
			(kind == "file" && m[3] != fmt.Sprint(len(e.content))) {
			t.Errorf("ls line %q for %+v", line, e)
		}
	}

	type lsJSON struct {
		Command      string      `json:"command"`
		File         string      `json:"file"`
		OK           bool        `json:"ok"`
		Files        int         `json:"files"`
		Dirs         int         `json:"dirs"`
		Symlinks     int         `json:"symlinks"`
		HardLinks    int         `json:"hard_links"`
		Bytes        int64       `json:"bytes"`
		ArchiveBytes int64       `json:"archive_bytes"`
		PayloadBytes int64       `json:"payload_bytes"`
		Padded       bool        `json:"padded"`
		Entries      []entryJSON `json:"entries"`
	}
	j := decodeJSON[lsJSON](t, u.ok("ls", backup, "--json").stdout)
	if j.Command != "ls" || !j.OK || j.Files != 6 || j.Symlinks != 2 || j.Dirs != 5 || len(j.Entries) != len(want) || !j.Padded {
		t.Errorf("ls --json: %+v", j)
	}
	for _, e := range j.Entries {
		w := want[e.Path]
		mode := fmt.Sprintf("%04o", w.perm)
		if w.kind == "symlink" {
			mode = e.Mode // a link's own mode is not kept
		}
		if e.Type != w.kind || e.Mode != mode || e.Target != w.target || (w.kind != "symlink" && e.MTime != w.mtime) ||
			(w.kind == "file" && e.Size != int64(len(w.content))) {
			t.Errorf("ls --json entry %+v for %+v", e, w)
		}
	}

	r := u.ok("verify", backup)
	if !strings.Contains(r.stdout, "is a good backup for this key: 6 files") || !strings.Contains(r.stdout, "every byte authenticated") {
		t.Errorf("verify said:\n%s%s", r.stdout, r.stderr)
	}
	v := decodeJSON[lsJSON](t, u.ok("verify", backup, "--json").stdout)
	if v.Command != "verify" || !v.OK || v.Files != 6 || v.Entries != nil || v.PayloadBytes != padme(v.ArchiveBytes) {
		t.Errorf("verify --json: %+v", v)
	}

	// Damage anywhere: a flipped bit in the middle, a cut.
	good, _ := os.ReadFile(backup)
	flipped := slices.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	cut := good[:len(good)-100]
	for name, data := range map[string][]byte{"flipped": flipped, "cut": cut} {
		bad := filepath.Join(out, name+".age")
		os.WriteFile(bad, data, 0o600)
		r := u.fails([]string{"the backup file is damaged, cut short or was altered"}, "verify", bad)
		if r.stdout != "" {
			t.Errorf("verify of a %s file printed %q", name, r.stdout)
		}
		if r := u.fails([]string{"damaged"}, "ls", bad); r.stdout != "" {
			t.Errorf("ls of a %s file listed:\n%s", name, r.stdout)
		}
	}
	// An archive no restore accepts, made by anyone who knows the
	// recipient: a link out of the restore folder.
	rec, err := age.ParseX25519Recipient(loadConfigE2E(t, u.config).AgeRecipient)
	if err != nil {
		t.Fatal(err)
	}
	hostile := filepath.Join(out, "hostile.age")
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "x", Linkname: "../../etc", Mode: 0o777})
	tw.Close()
	var enc bytes.Buffer
	w, _ := age.Encrypt(&enc, rec)
	w.Write(plain.Bytes())
	w.Close()
	os.WriteFile(hostile, enc.Bytes(), 0o600)
	u.fails([]string{"the backup's archive is not acceptable", "points outside the backup"}, "verify", hostile)
	if r := u.fails([]string{"not acceptable"}, "ls", hostile); r.stdout != "" {
		t.Errorf("ls of a hostile archive listed:\n%s", r.stdout)
	}
	// Another key.
	other, _ := client.NewBackupKey(nil)
	u.fails([]string{"this backup was not made with this key"}, "verify", backup, "--key", other.KeyText())
	u.ok("verify", backup, "--key", key)
	// Nothing written beside the backups.
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".age") {
			t.Errorf("%s appeared in %s", e.Name(), out)
		}
	}
}

// #4: a restore of some paths only, into an empty folder and into one
// holding part of the tree; dry runs of restore and backup write nothing.
func TestE2EPartialAndDryRuns(t *testing.T) {
	u, _ := keyUser(t)
	src := sourceTree(t)
	out := t.TempDir()
	backup := filepath.Join(out, "b.age")
	u.ok("backup", src, "-o", backup)
	want := snapshot(t, src)

	dst := filepath.Join(t.TempDir(), "restored")
	r := u.ok("restore", backup, "documents/photos/2025", "documents/notes.txt", "-C", dst)
	if !strings.Contains(r.stderr, "Restored 3 files") {
		t.Errorf("partial restore said:\n%s", r.stderr)
	}
	got := snapshot(t, filepath.Join(dst, "documents"))
	for k, e := range got {
		if k == "documents" || k == "documents/photos" {
			if e.kind != "dir" || e.perm != want[k].perm {
				t.Errorf("%s: %+v, want %+v", k, e, want[k])
			}
			continue
		}
		if !strings.HasPrefix(k, "documents/photos/2025") && k != "documents/notes.txt" {
			t.Errorf("restored %s, which was not asked for", k)
		} else if e != want[k] {
			t.Errorf("%s: %+v, want %+v", k, e, want[k])
		}
	}
	if len(got) != 7 {
		t.Errorf("restored %d entries, want 7: %v", len(got), got)
	}

	// More of it, into the folders now there; then everything with
	// --force: the tree is whole again.
	u.ok("restore", backup, "documents/bin", "-C", dst)
	if _, err := os.Stat(filepath.Join(dst, "documents/photos/2025/beach.raw")); err != nil {
		t.Error("a partial restore into a folder removed what it held")
	}
	u.fails([]string{"the restore would overwrite existing files", "documents/notes.txt"}, "restore", backup, "documents/notes.txt", "-C", dst)
	u.fails([]string{"not in the backup: documents/nothing"}, "restore", backup, "documents/nothing", "-C", dst)

	type restoreSummary struct {
		Command   string      `json:"command"`
		DryRun    bool        `json:"dry_run"`
		File      string      `json:"file"`
		Into      string      `json:"into"`
		Files     int         `json:"files"`
		Dirs      int         `json:"dirs"`
		Symlinks  int         `json:"symlinks"`
		HardLinks int         `json:"hard_links"`
		Bytes     int64       `json:"bytes"`
		Restored  []string    `json:"restored"`
		Replaced  []string    `json:"replaced"`
		Leftovers []any       `json:"leftovers"`
		Entries   []entryJSON `json:"entries"`
	}
	// A dry run over what is there says what it would replace, and
	// changes nothing.
	before := snapshot(t, filepath.Join(dst, "documents"))
	s := decodeJSON[restoreSummary](t, u.ok("restore", backup, "-C", dst, "--dry-run", "--force", "--json").stdout)
	if !s.DryRun || !slices.Equal(s.Replaced, []string{"documents"}) || s.Files != 6 || len(s.Entries) != len(want) {
		t.Errorf("dry run: %+v", s)
	}
	sameSnapshot(t, before, snapshot(t, filepath.Join(dst, "documents")))
	u.fails([]string{"would overwrite existing files"}, "restore", backup, "-C", dst, "--dry-run")
	s = decodeJSON[restoreSummary](t, u.ok("restore", backup, "-C", dst, "--force", "--json").stdout)
	if s.DryRun || !slices.Equal(s.Restored, []string{"documents"}) || !slices.Equal(s.Replaced, []string{"documents"}) || s.Files != 6 || s.Entries != nil {
		t.Errorf("restore --json: %+v", s)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))

	// A dry run into a new folder: listed, not made.
	fresh := filepath.Join(t.TempDir(), "fresh")
	r = u.ok("restore", backup, "documents/private", "-C", fresh, "--dry-run")
	if !strings.Contains(r.stdout, "documents/private/diary.md") || strings.Contains(r.stdout, "notes.txt") {
		t.Errorf("dry run listed:\n%s", r.stdout)
	}
	notExist(t, fresh)

	// backup --dry-run: what would be in, what excluded; no file.
	r = u.ok("backup", src, "-o", filepath.Join(out, "dry.age"), "--dry-run", "--exclude", "photos")
	if !strings.Contains(r.stdout, " documents/notes.txt\n") || strings.Contains(r.stdout, " documents/photos") ||
		!strings.Contains(r.stderr, "excluded "+filepath.Join(src, "photos")) {
		t.Errorf("backup --dry-run:\n%s\n%s", r.stdout, r.stderr)
	}
	notExist(t, filepath.Join(out, "dry.age"))
	os.Symlink("/etc", filepath.Join(src, "abs"))
	if r := u.run("backup", src, "--dry-run"); r.code != 3 || !strings.Contains(r.stderr, "would be incomplete") {
		t.Errorf("a dry run that would leave out: exit %d\n%s", r.code, r.stderr)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 {
		t.Errorf("%s holds %v", out, entries)
	}
}

func sameSnapshot(t *testing.T, a, b map[string]entry) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%d entries, then %d", len(a), len(b))
	}
	for k, e := range a {
		if b[k] != e {
			t.Errorf("%s changed: %+v, then %+v", k, e, b[k])
		}
	}
}

// #10: the size of a backup reveals little of its content. One more
// message in a chat backup that crosses a tar block leaves the backup's
// size as it was; stock age still decrypts the padded file, to the
// archive and then zeros; coffer restores it.
func TestE2EPaddedSize(t *testing.T) {
	u, key := keyUser(t)
	chat := filepath.Join(t.TempDir(), "chat")
	os.Mkdir(chat, 0o700)
	msgs := filepath.Join(chat, "messages")
	const msg = "see you at eight, bring the keys\n" // 33 bytes
	// The archive: the folder's header, the file's header and its
	// content in 512-byte blocks, the 1024-byte end marker. Find a size
	// where one more message needs one more block.
	archiveLen := func(n int64) int64 { return 512 + 512 + (n+511)/512*512 + 1024 }
	n := int64(100_000)
	for ; archiveLen(n) == archiveLen(n+int64(len(msg))) || padme(archiveLen(n)) != padme(archiveLen(n+int64(len(msg)))); n++ {
	}
	os.WriteFile(msgs, bytes.Repeat([]byte("x"), int(n)), 0o600)
	out := t.TempDir()
	u.ok("backup", chat, "-o", filepath.Join(out, "before.age"))
	f, _ := os.OpenFile(msgs, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(msg)
	f.Close()
	after := filepath.Join(out, "after.age")
	u.ok("backup", chat, "-o", after)
	a, _ := os.Stat(filepath.Join(out, "before.age"))
	b, _ := os.Stat(after)
	if a.Size() != b.Size() {
		t.Errorf("one more message changed the backup's size: %d, then %d", a.Size(), b.Size())
	}

	agePath := lookAge()
	if agePath == "" {
		t.Skip("SKIPPED: the age command is not installed (/usr/bin/age; apt-get install age): stock age on a padded backup not checked")
	}
	idFile := filepath.Join(t.TempDir(), "identity.txt")
	os.WriteFile(idFile, []byte(u.ok("key", "export-age", "--key", key).stdout), 0o600)
	cmd := exec.Command(agePath, "-d", "-i", idFile, after)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	plain, err := cmd.Output()
	if err != nil {
		t.Fatalf("age -d -i on a padded backup: %v\n%s", err, stderr.String())
	}
	alen := archiveLen(n + int64(len(msg)))
	if int64(len(plain)) != padme(alen) || int64(len(plain)) <= alen {
		t.Errorf("age -d gave %d bytes, want the archive's %d padded to %d", len(plain), alen, padme(alen))
	}
	if len(bytes.Trim(plain[alen:], "\x00")) != 0 {
		t.Error("the padding is not zeros")
	}
	got := tarSnapshot(t, bytes.NewReader(plain))
	if e := got["chat/messages"]; int64(len(e.content)) != n+int64(len(msg)) || !strings.HasSuffix(e.content, msg) {
		t.Errorf("age -d: the archive holds %d bytes of messages", len(e.content))
	}
	dst := filepath.Join(t.TempDir(), "restored")
	u.ok("restore", after, "-C", dst)
	sameTree(t, chat, filepath.Join(dst, "chat"))
	if r := u.ok("verify", after); !strings.Contains(r.stdout, "; padded.") {
		t.Errorf("verify: %s", r.stdout)
	}
}

// #9: a backup or restore killed with SIGKILL leaves its temporary file or
// folder; the next run in the same folder removes it, and leaves alone one
// that a running process holds.
func TestE2ELeftoversOfKilledRuns(t *testing.T) {
	u, _ := keyUser(t)
	big := filepath.Join(t.TempDir(), "big")
	os.Mkdir(big, 0o755)
	sparse(t, filepath.Join(big, "disk.img"), 256<<20)

	// A backup, killed once its temporary file has data.
	out := t.TempDir()
	backup := filepath.Join(out, "b.age")
	stale := killWhen(t, u, func() string {
		m, _ := filepath.Glob(filepath.Join(out, ".b.age.partial-*"))
		if len(m) == 1 {
			if fi, err := os.Stat(m[0]); err == nil && fi.Size() > 0 {
				return m[0]
			}
		}
		return ""
	}, "backup", big, "-o", backup)
	notExist(t, backup)
	// Another run's, held by a process that is still running.
	held := filepath.Join(out, ".other.age.partial-777")
	os.WriteFile(held, []byte("age-encryption.org/v1\n-> X25519 "), 0o600)
	holdLock(t, held)

	small := sourceTree(t)
	r := u.ok("backup", small, "-o", backup)
	if !strings.Contains(r.stderr, "Removed "+stale) || !strings.Contains(r.stderr, "left by a backup that was killed") ||
		!strings.Contains(r.stderr, "Left "+held+" alone") {
		t.Errorf("the next backup said:\n%s", r.stderr)
	}
	notExist(t, stale)
	if _, err := os.Stat(held); err != nil {
		t.Errorf("the held leftover was removed: %v", err)
	}

	// A restore, killed while it extracts.
	u.ok("backup", big, "-o", filepath.Join(out, "big.age"))
	dst := filepath.Join(t.TempDir(), "restored")
	staleDir := killWhen(t, u, func() string {
		m, _ := filepath.Glob(filepath.Join(dst, ".coffer-restore-*"))
		if len(m) == 1 {
			if n := treeBytes(m[0]); n > 0 {
				return m[0]
			}
		}
		return ""
	}, "restore", filepath.Join(out, "big.age"), "-C", dst)
	heldDir := filepath.Join(dst, ".coffer-restore-999")
	os.Mkdir(heldDir, 0o700)
	holdLock(t, heldDir)

	r = u.ok("restore", backup, "-C", dst, "--dry-run")
	if !strings.Contains(r.stderr, "Would remove "+staleDir) || !strings.Contains(r.stderr, "Left "+heldDir+" alone") {
		t.Errorf("a dry run said:\n%s", r.stderr)
	}
	if _, err := os.Stat(staleDir); err != nil {
		t.Fatal("the dry run removed the leftover")
	}
	r = u.ok("restore", backup, "-C", dst)
	if !strings.Contains(r.stderr, "Removed "+staleDir) || !strings.Contains(r.stderr, "left by a restore that was killed") ||
		!strings.Contains(r.stderr, "Left "+heldDir+" alone") {
		t.Errorf("the next restore said:\n%s", r.stderr)
	}
	notExist(t, staleDir)
	if _, err := os.Stat(heldDir); err != nil {
		t.Errorf("the held leftover was removed: %v", err)
	}
	sameTree(t, small, filepath.Join(dst, "documents"))
}

// killWhen starts coffer with args, waits until found returns a path
// (polling), kills coffer with SIGKILL and returns the path.
func killWhen(t *testing.T, u *user, found func() string, args ...string) string {
	t.Helper()
	env := map[string]string{}
	for k, v := range u.env {
		env[k] = v
	}
	cmd := exec.Command(e2eBin(t, "coffer"), append([]string{"-config", u.config}, args...)...)
	cmd.Env = e2eEnviron(t, env)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for {
		if p := found(); p != "" {
			cmd.Process.Signal(syscall.SIGKILL)
			if err := <-done; err == nil {
				t.Fatalf("coffer %s finished before it was killed", args[0])
			}
			if _, err := os.Lstat(p); err != nil {
				t.Fatalf("nothing left by the killed %s: %v", args[0], err)
			}
			return p
		}
		select {
		case err := <-done:
			t.Fatalf("coffer %s ended (%v) before it could be killed:\n%s", args[0], err, outb.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("coffer %s made nothing to kill it on", args[0])
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// holdLockEnv makes this test binary a process that holds an flock on
// the path it names (as a running coffer holds its temporary file or
// folder) until killed.
const holdLockEnv = "COFFER_TEST_HOLD_LOCK"

func init() {
	p := os.Getenv(holdLockEnv)
	if p == "" {
		return
	}
	f, err := os.Open(p)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Hour)
	os.Exit(0)
}

// holdLock starts another process holding an flock on p for the rest of
// the test.
func holdLock(t *testing.T, p string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), holdLockEnv+"="+p)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := io.ReadAll(io.LimitReader(stdout, 7))
	if string(line) != "locked\n" {
		t.Fatalf("the lock holder said %q", line)
	}
}

func sparse(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("data at the end"), size-15)
}

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

// The progress bar on a terminal shows an ETA, and clears its line when
// done, so that the summary is not printed after a stale bar.
func TestE2EProgressBar(t *testing.T) {
	u, _ := keyUser(t)
	big := filepath.Join(t.TempDir(), "big")
	os.Mkdir(big, 0o755)
	sparse(t, filepath.Join(big, "disk.img"), 512<<20)

	master, slave, err := openPty()
	if err != nil {
		t.Skipf("SKIPPED: no pseudo-terminal (%v): the progress bar is drawn only on a terminal", err)
	}
	defer master.Close()
	cmd := exec.Command(e2eBin(t, "coffer"), "-config", u.config, "backup", big, "-o", "-")
	cmd.Env = e2eEnviron(t, u.env)
	cmd.Stdout = io.Discard
	cmd.Stderr = slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var screen bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&screen, master); close(copied) }() // ends with EIO when coffer exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("backup: %v\n%q", err, screen.String())
	}
	<-copied
	s := screen.String()
	if !strings.Contains(s, "backup [") {
		t.Skipf("SKIPPED: the backup ended before the bar was first drawn: %q", s)
	}
	if !regexp.MustCompile(`backup \[#* *\] +\d+%.*/s  ETA \d+:\d\d`).MatchString(s) {
		t.Errorf("no ETA on the bar: %q", s)
	}
	lastBar := strings.LastIndex(s, "backup [")
	clear := strings.LastIndex(s, "\r\x1b[K")
	summary := strings.Index(s, "Backed up 1 files")
	if summary < 0 || clear < lastBar || clear > summary || strings.TrimSpace(s[clear+len("\r\x1b[K"):summary]) != "" {
		t.Errorf("the bar's line was not cleared before the summary: %q", s[max(lastBar, 0):])
	}
}

// openPty opens a pseudo-terminal pair (Linux /dev/ptmx).
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}
