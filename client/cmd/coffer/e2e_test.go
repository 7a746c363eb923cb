package main

// End-to-end tests (issue 5): the real coffer, cofferd and softvault
// binaries as processes, coffer driven as a user drives it. The harness is
// in e2e_harness_test.go, the recording proxies in e2e_proxy_test.go.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/client"
)

// stack is a software vault process, optionally a recording frame proxy,
// and cofferd in front, with accounts.
type stack struct {
	vault   *softVault
	provKey string // hex: what clients pin
	proxy   *frameProxy
	cofferd *daemon
	tokens  map[string]string
}

func newStack(t *testing.T, withProxy bool, accounts ...string) *stack {
	t.Helper()
	dir := t.TempDir()
	s := &stack{}
	s.vault, s.provKey = newDevVault(t, filepath.Join(dir, "vault"))
	sock := s.vault.sock
	if withProxy {
		s.proxy = startFrameProxy(t, sock)
		sock = s.proxy.sock
	}
	acc := filepath.Join(dir, "accounts.json")
	s.tokens = newAccounts(t, acc, accounts...)
	s.cofferd = startCofferd(t, acc, sock)
	return s
}

// 1 and 4: init with a password, back up a tree, restore it elsewhere:
// identical. Then stock age decrypts the same backup with the identity
// `coffer key export-age` prints.
func TestE2EBackupRestore(t *testing.T) {
	s := newStack(t, false, "alice")
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "correct horse battery staple"
	u.initPassword(s.cofferd.url(), s.tokens["alice"], s.provKey, "--insecure", "--limit", "3")

	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	r := u.ok("backup", src, "-o", backup)
	if !strings.Contains(r.stderr, "Backed up 6 files") || !strings.Contains(r.stderr, "2 symlinks") {
		t.Errorf("backup summary:\n%s", r.stderr)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	r = u.ok("restore", backup, "-C", dst)
	if strings.Contains(r.stderr, "NOTE") {
		t.Errorf("a first login reports failed attempts:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "Restored 6 files") {
		t.Errorf("restore summary:\n%s", r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))
	if entries, _ := os.ReadDir(dst); len(entries) != 1 {
		t.Errorf("restore left more than the backup's top folder in %s: %v", dst, entries)
	}

	t.Run("age CLI decrypts with the exported identity", func(t *testing.T) {
		agePath := lookAge()
		if agePath == "" {
			t.Skip("SKIPPED: the age command is not installed (/usr/bin/age; apt-get install age): stock age interop not checked")
		}
		out := u.ok("key", "export-age").stdout
		ids := reAgeIdentity.FindAllString(out, -1)
		if len(ids) != 1 {
			t.Fatalf("export-age printed:\n%s", out)
		}
		idFile := filepath.Join(t.TempDir(), "identity.txt")
		if err := os.WriteFile(idFile, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(agePath, "-d", "-i", idFile, backup)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		plain, err := cmd.Output()
		if err != nil {
			t.Fatalf("age -d -i: %v\n%s", err, stderr.String())
		}
		got := tarSnapshot(t, bytes.NewReader(plain))
		want := snapshot(t, src)
		for k, e := range want {
			if got[k] != e {
				t.Errorf("age -d: %s is %+v, want %+v", k, got[k], e)
			}
		}
		if len(got) != len(want) {
			t.Errorf("age -d: %d entries, want %d", len(got), len(want))
		}
		// Another identity does not open it: the check above is not vacuous.
		other, _ := age.GenerateX25519Identity()
		os.WriteFile(idFile, []byte(other.String()+"\n"), 0o600)
		if err := exec.Command(agePath, "-d", "-i", idFile, "-o", os.DevNull, backup).Run(); err == nil {
			t.Error("age decrypted the backup with a stranger's identity")
		}
	})
}

func lookAge() string {
	if p, err := exec.LookPath("age"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/age"); err == nil {
		return "/usr/bin/age"
	}
	return ""
}

// tarSnapshot describes a tar stream as snapshot describes a tree.
func tarSnapshot(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m
		}
		if err != nil {
			t.Fatal(err)
		}
		e := entry{perm: os.FileMode(h.Mode).Perm(), mtime: h.ModTime.Unix()}
		switch h.Typeflag {
		case tar.TypeDir:
			e.kind = "dir"
		case tar.TypeReg:
			e.kind = "file"
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			e.content = string(b)
		case tar.TypeSymlink:
			e = entry{kind: "symlink", target: h.Linkname}
		default:
			e.kind = fmt.Sprintf("tar type %q", h.Typeflag)
		}
		m[strings.TrimSuffix(h.Name, "/")] = e
	}
}

// 2: with a limit of 3, two wrong passwords then the right one restore, and
// the CLI reports the two failed attempts; three wrong passwords erase the
// key, and the right password then gets a clear "gone for ever".
func TestE2EWrongPasswordsAndLockout(t *testing.T) {
	s := newStack(t, false, "bob")
	u := newUser(t)
	const right = "the right password"
	u.env["COFFER_PASSWORD"] = right
	u.initPassword(s.cofferd.url(), s.tokens["bob"], s.provKey, "--insecure", "--limit", "3")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)
	dst := filepath.Join(t.TempDir(), "restored")

	u.env["COFFER_PASSWORD"] = "wrong 1"
	u.fails([]string{"wrong password: 2 of 3 tries left; 1 failed attempt since the last successful login"}, "restore", backup, "-C", dst)
	notExist(t, dst)
	u.env["COFFER_PASSWORD"] = "wrong 2"
	u.fails([]string{"wrong password: 1 of 3 tries left; 2 failed attempts since the last successful login"}, "restore", backup, "-C", dst)
	notExist(t, dst)

	u.env["COFFER_PASSWORD"] = right
	r := u.ok("restore", backup, "-C", dst)
	if !strings.Contains(r.stderr, "NOTE: 2 wrong passwords were tried on this account since its last successful login") {
		t.Errorf("the release does not report the failed attempts:\n%s", r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))
	st := u.ok("status").stdout
	if !strings.Contains(st, "last receipt:     released, 3 of 3 tries left, 2 failed attempts since the last success") {
		t.Errorf("status after the release:\n%s", st)
	}
	// The counter started again: the next login reports nothing.
	if r := u.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "again")); strings.Contains(r.stderr, "NOTE") {
		t.Errorf("a second success still reports failed attempts:\n%s", r.stderr)
	}

	// Three wrong passwords in a row: the third erases the key.
	locked := filepath.Join(t.TempDir(), "locked")
	for i, want := range []string{
		"wrong password: 2 of 3 tries left; 1 failed attempt",
		"wrong password: 1 of 3 tries left; 2 failed attempts",
		"wrong password, and that was the last try: the vault has erased the key for ever (3 failed attempts since the last successful login)",
	} {
		u.env["COFFER_PASSWORD"] = fmt.Sprintf("guess %d", i)
		u.fails([]string{want}, "restore", backup, "-C", locked)
	}
	u.env["COFFER_PASSWORD"] = right
	for _, args := range [][]string{{"restore", backup, "-C", locked}, {"key", "export-age"}} {
		r := u.fails([]string{"this account is locked: after 3 failed attempts the vault erased the key for ever",
			"No password can get it back", "coffer key export-age"}, args...)
		if reAgeIdentity.MatchString(r.stdout) {
			t.Error("a locked account printed an identity")
		}
	}
	notExist(t, locked)
	st = u.ok("status").stdout
	if !strings.Contains(st, "last receipt:     locked, 0 of 3 tries left, 3 failed attempts") {
		t.Errorf("status after the lockout:\n%s", st)
	}
}

// 3: the 64-digit key mode round trip, and a typo in the typed key caught
// by its check group before any decryption.
func TestE2EKeyMode(t *testing.T) {
	u := newUser(t)
	key := shownKey64(t, u.ok("init").stdout)
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)

	dst := filepath.Join(t.TempDir(), "restored")
	digits := strings.ReplaceAll(key, " ", "")
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i] = map[bool]byte{true: 'a', false: '7'}[b[i] == '7']
		return string(b)
	}
	swap := 40 // two neighbours in group 11 that differ
	for swap < 42 && digits[swap] == digits[swap+1] {
		swap++
	}
	swapped := []byte(digits)
	swapped[swap], swapped[swap+1] = swapped[swap+1], swapped[swap]
	typos := []struct {
		name, text, group string
	}{
		{"one digit in group 5", flip(digits, 17), "group 5"},
		{"one digit in the check group", flip(digits, 65), "the check group"},
		{"neighbours swapped in group 11", string(swapped), "group 11"},
	}
	for _, ty := range typos {
		if ty.text == digits {
			continue // group 11 is one digit four times: no swap is a typo
		}
		r := u.fails([]string{"64-digit key: the check group does not match: the key has a typo"}, "restore", backup, "-C", dst, "--key", ty.text)
		if strings.Contains(r.stderr, "look again at") && !strings.Contains(r.stderr, ty.group) {
			t.Errorf("%s: the hint does not name %s: %s", ty.name, ty.group, r.stderr)
		}
		if strings.Contains(r.stderr, "not made with this key") {
			t.Errorf("%s: decryption was tried", ty.name)
		}
		notExist(t, dst)
	}
	// Through COFFER_KEY, upper case with dashes, as pasted.
	u.env["COFFER_KEY"] = strings.ToUpper(strings.ReplaceAll(flip(key, 0), " ", "-"))
	u.fails([]string{"the check group does not match"}, "restore", backup, "-C", dst)
	delete(u.env, "COFFER_KEY")
	u.fails([]string{"only 64 digits: the check group is missing"}, "restore", backup, "-C", dst, "--key", strings.ReplaceAll(key, " ", "")[:64])
	notExist(t, dst)

	// A well-formed key of another account passes the check and fails at
	// decryption: the typos above were stopped before that.
	other, err := client.NewBackupKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	u.fails([]string{"this backup was not made with this key"}, "restore", backup, "-C", dst, "--key", other.KeyText())
	notExist(t, dst)

	u.ok("restore", backup, "-C", dst, "--key", key)
	sameTree(t, src, filepath.Join(dst, "documents"))

	// On another machine, without any configuration: the key alone.
	fresh := newUser(t)
	fresh.env["COFFER_KEY"] = strings.ToUpper(strings.ReplaceAll(key, " ", "-"))
	dst2 := filepath.Join(t.TempDir(), "elsewhere")
	fresh.ok("restore", backup, "-C", dst2)
	sameTree(t, src, filepath.Join(dst2, "documents"))
}

// 5: a password change (the old password then fails, the new one works,
// backups stay valid) and delete (the key is gone: the configuration is
// removed, and another device's login fails).
func TestE2EChangePasswordAndDelete(t *testing.T) {
	s := newStack(t, false, "erin")
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "old password"
	u.initPassword(s.cofferd.url(), s.tokens["erin"], s.provKey, "--insecure", "--limit", "3")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)
	recipient := reRecipient.FindStringSubmatch(u.ok("status", "--offline").stdout)[1]

	u.env["COFFER_NEW_PASSWORD"] = "new password"
	r := u.ok("password", "change")
	if !strings.Contains(r.stdout, "Password changed (receipt verified") {
		t.Errorf("password change said:\n%s", r.stdout)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	u.fails([]string{"wrong password: 2 of 3 tries left"}, "restore", backup, "-C", dst)
	notExist(t, dst)
	u.env["COFFER_PASSWORD"] = "new password"
	r = u.ok("restore", backup, "-C", dst)
	if !strings.Contains(r.stderr, "NOTE: 1 wrong password was tried") {
		t.Errorf("the old password's attempt is not reported:\n%s", r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))

	// A second device fetches the key with the new password.
	dev2 := newUser(t)
	dev2.env["COFFER_PASSWORD"] = "new password"
	dev2.ok("init", "--existing", "--insecure", "--server", s.cofferd.url(), "--token", s.tokens["erin"], "--provisioning-key", s.provKey)
	if got := reRecipient.FindStringSubmatch(dev2.ok("status", "--offline").stdout)[1]; got != recipient {
		t.Fatalf("the second device backs up to %s, not %s", got, recipient)
	}

	u.fails([]string{"Confirm with --yes"}, "delete")
	r = u.ok("delete", "--yes")
	if !strings.Contains(r.stdout, "The vault erased this account's key (receipt verified") {
		t.Errorf("delete said:\n%s", r.stdout)
	}
	notExist(t, u.config)
	u.fails([]string{"not initialised"}, "status")
	u.fails([]string{"not initialised"}, "backup", src, "-o", filepath.Join(t.TempDir(), "b.age"))

	// The other device's right password no longer opens anything. (The
	// vault answers for a deleted record as for any unknown one, so that
	// cofferd cannot tell them apart: the client sees a wrong password.)
	dst2 := filepath.Join(t.TempDir(), "after-delete")
	dev2.fails([]string{"wrong password"}, "restore", backup, "-C", dst2)
	dev2.fails([]string{"wrong password"}, "key", "export-age")
	notExist(t, dst2)
}
