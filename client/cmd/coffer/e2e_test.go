package main

// End-to-end tests (issue 5): the real coffer, cofferd and softvault
// binaries as processes, coffer driven as a user drives it. The harness is
// in e2e_harness_test.go, the recording proxies in e2e_proxy_test.go.

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/text/unicode/norm"

	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
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
	// ls and verify get K as restore does: here a vault login each.
	if r := u.ok("verify", backup); !strings.Contains(r.stdout, "is a good backup for this key: 6 files") {
		t.Errorf("verify:\n%s%s", r.stdout, r.stderr)
	}
	if r := u.ok("ls", backup); !strings.Contains(r.stdout, " documents/private/diary.md\n") {
		t.Errorf("ls:\n%s%s", r.stdout, r.stderr)
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
		if out, err := exec.Command(agePath, "-d", "-i", idFile, backup).CombinedOutput(); err == nil || !bytes.Contains(out, []byte("no identity matched")) {
			t.Errorf("age with a stranger's identity: %v, %.200q", err, out)
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
	if !strings.Contains(r.stderr, "NOTE: 2 failed attempts were counted on this account since its last successful login") {
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
	if !strings.Contains(r.stderr, "NOTE: 1 failed attempt was counted") {
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

	// The other device's right password no longer opens anything. The
	// vault answers for a deleted record as for any unknown one, so that
	// cofferd cannot tell them apart; the client sees a receipt for another
	// registration than its own and says the key is gone, never "wrong
	// password".
	dst2 := filepath.Join(t.TempDir(), "after-delete")
	dev2.fails([]string{"no longer holds this account's key", "password was not checked"}, "restore", backup, "-C", dst2)
	dev2.fails([]string{"no longer holds this account's key"}, "key", "export-age")
	notExist(t, dst2)
}

// 6: the vault is a separate `softvault serve` process behind cofferd. It
// is killed (SIGKILL) between registration and login and started again on
// the same state: cofferd reconnects and the restore works. Logins cut by
// a kill (at login-start, and between login-start and login-finish) fail
// cleanly, restore nothing, and are counted as attempts.
func TestE2EVaultRestart(t *testing.T) {
	s := newStack(t, true, "frank")
	u := newUser(t)
	const pw = "survives restarts"
	u.env["COFFER_PASSWORD"] = pw
	u.initPassword(s.cofferd.url(), s.tokens["frank"], s.provKey, "--insecure", "--limit", "5")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)
	dst := filepath.Join(t.TempDir(), "restored")

	restart := func() {
		t.Helper()
		s.vault.serve()
		s.cofferd.waitConnected(true, 30*time.Second)
	}

	// Killed between register and login; while it is down, a login fails
	// at once, and reaches no vault.
	s.vault.proc.kill()
	s.cofferd.waitConnected(false, 10*time.Second)
	u.fails([]string{"identity: the vault is unavailable (503"}, "restore", backup, "-C", dst)
	notExist(t, dst)
	restart()
	r := u.ok("restore", backup, "-C", dst)
	if strings.Contains(r.stderr, "NOTE") {
		t.Errorf("a login refused by cofferd was counted:\n%s", r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))

	// inFlight runs a restore, kills the vault once the proxy holds the
	// frame named, and returns the restore's result.
	inFlight := func(dir int, typ protocol.Type) e2eResult {
		t.Helper()
		held := s.proxy.holdNext(dir, typ)
		out := filepath.Join(t.TempDir(), "cut")
		res := make(chan e2eResult, 1)
		go func() { res <- u.run("restore", backup, "-C", out) }()
		select {
		case <-held:
		case r := <-res:
			t.Fatalf("the restore ended before the vault was killed: %+v", r)
		case <-time.After(30 * time.Second):
			t.Fatal("the login never reached the held frame")
		}
		s.vault.proc.kill()
		var r e2eResult
		select {
		case r = <-res:
		case <-time.After(30 * time.Second):
			t.Fatal("the cut login did not end")
		}
		if r.code != 1 {
			t.Fatalf("a login cut by a vault kill: exit %d\n%s", r.code, r.stderr)
		}
		if reAgeIdentity.MatchString(r.stdout) || strings.Contains(r.stderr, "Restored") {
			t.Fatalf("a cut login restored something: %+v", r)
		}
		notExist(t, out)
		return r
	}

	// The vault counted the guess and died before its reply left.
	r = inFlight(fromVault, protocol.TypeLoginStart)
	if !strings.Contains(r.stderr, "login-start: the vault is unavailable (503") {
		t.Errorf("a login-start cut by a kill says:\n%s", r.stderr)
	}
	restart()
	// The KE3 never reached the vault.
	r = inFlight(toVault, protocol.TypeLoginFinish)
	if !strings.Contains(r.stderr, "login-finish: the vault is unavailable (503") || !strings.Contains(r.stderr, "a login starts again from the beginning") {
		t.Errorf("a login-finish cut by a kill says:\n%s", r.stderr)
	}
	restart()

	// Both cut logins were counted by the vault, durably, and are shown.
	dst2 := filepath.Join(t.TempDir(), "after")
	r = u.ok("restore", backup, "-C", dst2)
	if !strings.Contains(r.stderr, "NOTE: 2 failed attempts were counted on this account since its last successful login") {
		t.Errorf("the cut logins are not reported:\n%s", r.stderr)
	}
	sameTree(t, src, filepath.Join(dst2, "documents"))
	if st := u.ok("status").stdout; !strings.Contains(st, "last receipt:     released, 5 of 5 tries left") {
		t.Errorf("status:\n%s", st)
	}
}

// 7: trust in the vault. An insecure vault is refused without --insecure;
// a bundle signed by another provisioning key is refused; once the client
// has pinned a vault, another vault signed by the same provisioning key is
// refused, and so are a foreign-signed and an unprovisioned one, each
// before any login reaches it.
func TestE2EVaultTrust(t *testing.T) {
	dir := t.TempDir()
	provKey := filepath.Join(dir, "prov.key")
	provPub := newProvisioningKey(t, provKey)
	otherKey := filepath.Join(dir, "other.key")
	otherPub := newProvisioningKey(t, otherKey)

	pinned := newSignedVault(t, filepath.Join(dir, "a"), provKey)
	sibling := newSignedVault(t, filepath.Join(dir, "b"), provKey) // same provisioning key, another device
	foreign := newSignedVault(t, filepath.Join(dir, "c"), otherKey)
	unsigned := newSignedVault(t, filepath.Join(dir, "d"), "") // never provisioned
	for _, v := range []*softVault{pinned, sibling, foreign, unsigned} {
		v.serve()
	}
	px := startFrameProxy(t, pinned.sock)
	acc := filepath.Join(dir, "accounts.json")
	tokens := newAccounts(t, acc, "grace")
	d := startCofferd(t, acc, px.sock)
	initArgs := func(prov string, extra ...string) []string {
		return append([]string{"init", "--password", "--server", d.url(), "--token", tokens["grace"], "--provisioning-key", prov}, extra...)
	}

	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "trust but verify"
	u.fails([]string{"the vault is INSECURE", "refused without --insecure"}, initArgs(provPub)...)
	notExist(t, u.config)
	u.fails([]string{"the vault's identity bundle is not signed by the pinned provisioning key"}, initArgs(otherPub, "--insecure")...)
	notExist(t, u.config)
	if n := px.count(toVault, protocol.TypeRegisterStart); n != 0 {
		t.Fatalf("%d registrations reached a refused vault", n)
	}

	u.initPassword(d.url(), tokens["grace"], provPub, "--insecure")
	pin := loadConfigE2E(t, u.config).BundleHash
	st := u.ok("status").stdout
	if !strings.Contains(st, "vault check:      bundle verified and pinned") {
		t.Fatalf("status:\n%s", st)
	}
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)
	dst := filepath.Join(t.TempDir(), "restored")

	swap := func(v *softVault) {
		t.Helper()
		before := px.connections()
		px.retarget(v.sock)
		deadline := time.Now().Add(30 * time.Second)
		for px.connections() == before || !d.connected() {
			if time.Now().After(deadline) {
				t.Fatal("cofferd did not reconnect to the swapped vault")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, c := range []struct {
		name string
		v    *softVault
		want []string
	}{
		{"another vault signed by the same key", sibling, []string{"the vault's identity bundle changed since it was pinned", "coffer vault accept-new-identity"}},
		{"a vault signed by another key", foreign, []string{"the vault's identity bundle is not signed by the pinned provisioning key"}},
		{"an unprovisioned vault", unsigned, []string{"identity bundle", "not provisioned"}},
	} {
		swap(c.v)
		logins := px.count(toVault, protocol.TypeLoginStart)
		r := u.fails(c.want, "restore", backup, "-C", dst)
		t.Logf("%s: %s", c.name, strings.TrimSpace(r.stderr))
		u.fails(c.want, "status")
		notExist(t, dst)
		if n := px.count(toVault, protocol.TypeLoginStart); n != logins {
			t.Errorf("%s: a login reached it", c.name)
		}
		if got := loadConfigE2E(t, u.config).BundleHash; got != pin {
			t.Errorf("%s: the pin changed from %s to %s", c.name, pin, got)
		}
	}

	// The pinned vault again: all is well.
	swap(pinned)
	u.ok("restore", backup, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
}

// 8: what the operator sees. A recording proxy sits on each hop it
// controls (coffer ⇄ cofferd over TCP, cofferd ⇄ vault over the unix
// socket); flows 1, 2 and 5 run through them; no recorded byte, in either
// direction of either hop, is a password (as typed, or NFC), K (raw, or hex
// in any case, or its 64-digit text) or the age secret key. K is known to
// the test because it is given to init (--key). The export key and the
// OPAQUE session keys never leave the client process, so this test cannot
// know them: host/capture_test.go covers them, driving the protocol client
// directly and keeping the keys it derives.
func TestE2ECapture(t *testing.T) {
	s := newStack(t, true, "carol", "dave")
	tcp := startTCPProxy(t, s.cofferd.addr)
	server := tcp.url()

	// Passwords typed in decomposed form: NFC changes them.
	pw1 := "Mot de passe d’e\u0301te\u0301, n\u0303, 🔑 1"
	pw2 := "Nouveau mot de passe A\u030a 2"
	pw3 := "Dave's passphrase o\u0308 3"
	wrongs := []string{"dave guess 1", "dave guess 2", "dave guess 3", "dave guess 4", "dave guess 5"}
	for _, p := range []string{pw1, pw2, pw3} {
		if norm.NFC.String(p) == p {
			t.Fatalf("%q is already NFC: the test would not tell the forms apart", p)
		}
	}
	k1, err := client.NewBackupKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := client.NewBackupKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	src := sourceTree(t)

	// Flows 1 and 5 for carol.
	carol := newUser(t)
	carol.env["COFFER_PASSWORD"] = pw1
	carol.initPassword(server, s.tokens["carol"], s.provKey, "--insecure", "--limit", "3", "--key", k1.KeyText())
	want1, _ := k1.AgeRecipient()
	if got := reRecipient.FindStringSubmatch(carol.ok("status", "--offline").stdout)[1]; got != want1 {
		t.Fatalf("init --key: recipient %s, want K's %s", got, want1)
	}
	backup1 := filepath.Join(t.TempDir(), "carol.age")
	carol.ok("backup", src, "-o", backup1)
	dst := filepath.Join(t.TempDir(), "carol-1")
	carol.ok("restore", backup1, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
	carolCopy := *carol
	carolCopy.config = filepath.Join(t.TempDir(), "copy.json")
	copyFileE2E(t, carol.config, carolCopy.config)

	carol.env["COFFER_NEW_PASSWORD"] = pw2
	carol.ok("password", "change")
	carol.fails([]string{"wrong password"}, "restore", backup1, "-C", filepath.Join(t.TempDir(), "old"))
	carol.env["COFFER_PASSWORD"] = pw2
	dst = filepath.Join(t.TempDir(), "carol-2")
	carol.ok("restore", backup1, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
	if out := carol.ok("key", "export-age").stdout; !strings.Contains(out, k1.AgeIdentityString()) {
		t.Fatal("the vault released another key than the one given at init")
	}
	carol.ok("delete", "--yes")
	carolCopy.env = map[string]string{"COFFER_PASSWORD": pw2}
	carolCopy.fails([]string{"no longer holds this account's key"}, "restore", backup1, "-C", filepath.Join(t.TempDir(), "deleted"))

	// Flow 2 for dave: two wrong, right, three wrong (locked), right.
	dave := newUser(t)
	dave.env["COFFER_PASSWORD"] = pw3
	dave.initPassword(server, s.tokens["dave"], s.provKey, "--insecure", "--limit", "3", "--key", k2.KeyText())
	backup2 := filepath.Join(t.TempDir(), "dave.age")
	dave.ok("backup", src, "-o", backup2)
	for i, w := range wrongs {
		if i == 2 {
			dave.env["COFFER_PASSWORD"] = pw3
			dave.ok("restore", backup2, "-C", filepath.Join(t.TempDir(), "dave"))
		}
		dave.env["COFFER_PASSWORD"] = w
		dave.fails([]string{"wrong password"}, "restore", backup2, "-C", filepath.Join(t.TempDir(), "x"))
	}
	dave.env["COFFER_PASSWORD"] = pw3
	dave.fails([]string{"this account is locked"}, "restore", backup2, "-C", filepath.Join(t.TempDir(), "x"))

	// What must not be on the wire.
	type needle struct {
		name string
		b    []byte
		fold bool // ASCII case-insensitive
	}
	var needles []needle
	for i, p := range append([]string{pw1, pw2, pw3}, wrongs...) {
		needles = append(needles,
			needle{fmt.Sprintf("password %d as typed", i), []byte(p), false},
			needle{fmt.Sprintf("password %d in NFC", i), norm.NFC.Bytes([]byte(p)), false})
	}
	for i, k := range []*client.BackupKey{k1, k2} {
		raw := k.Bytes()
		needles = append(needles,
			needle{fmt.Sprintf("K%d raw", i+1), raw, false},
			needle{fmt.Sprintf("K%d hex", i+1), []byte(hex.EncodeToString(raw)), true},
			needle{fmt.Sprintf("K%d 64-digit text", i+1), []byte(k.KeyText()), true},
			needle{fmt.Sprintf("K%d 64-digit text without dashes", i+1), []byte(strings.ReplaceAll(k.KeyText(), "-", "")), true},
			needle{fmt.Sprintf("K%d age secret key", i+1), []byte(k.AgeIdentityString()), true},
		)
	}
	hops := []struct {
		name string
		rec  *recording
	}{{"coffer⇄cofferd (TCP)", &tcp.rec}, {"cofferd⇄vault (unix)", &s.proxy.rec}}
	perDirection := map[string]int{}
	for _, hop := range hops {
		hop.rec.each(func(stream string, b []byte) {
			dir, _, _ := strings.Cut(stream, " #")
			perDirection[dir] += len(b)
		})
	}
	for _, dir := range []string{"coffer→cofferd", "cofferd→coffer", "cofferd→vault", "vault→cofferd"} {
		if perDirection[dir] < 1000 {
			t.Fatalf("%s: only %d bytes recorded", dir, perDirection[dir])
		}
	}
	for _, hop := range hops {
		hop.rec.each(func(stream string, b []byte) {
			folded := asciiLower(b)
			for _, n := range needles {
				hay, pin := b, n.b
				if n.fold {
					hay, pin = folded, asciiLower(n.b)
				}
				if bytes.Contains(hay, pin) {
					t.Errorf("%s, %s: the recording contains %s", hop.name, stream, n.name)
				}
			}
		})
	}

	// The recordings are real, and the search finds what is there: the
	// bearer token (mixed case, folded too) on the TCP hop, carol's user
	// id (raw, in login-start) on the vault hop.
	token := []byte("Bearer " + s.tokens["carol"])
	found := false
	tcp.rec.each(func(_ string, b []byte) {
		found = found || (bytes.Contains(b, token) && bytes.Contains(asciiLower(b), asciiLower(token)))
	})
	if !found {
		t.Error("the TCP recording does not hold the bearer token: it recorded nothing useful")
	}
	uid, _ := hex.DecodeString(userIDOf(t, carolCopy.config))
	found = false
	s.proxy.rec.each(func(_ string, b []byte) { found = found || bytes.Contains(b, uid) })
	if !found {
		t.Error("the vault hop's recording does not hold the user id: it recorded nothing useful")
	}
	for _, typ := range []protocol.Type{protocol.TypeRegisterStart, protocol.TypeLoginStart, protocol.TypeLoginFinish, protocol.TypeSession} {
		if s.proxy.count(toVault, typ) == 0 {
			t.Errorf("no %s went through the vault hop", typ)
		}
	}
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func copyFileE2E(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func userIDOf(t *testing.T, config string) string {
	t.Helper()
	return loadConfigE2E(t, config).UserID
}

func loadConfigE2E(t *testing.T, config string) *client.Config {
	t.Helper()
	cfg, err := client.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// 9: hostile backups. Anyone who knows the public recipient can make a
// valid backup file; these are age-encrypted to the user's recipient (read
// from `coffer status`) and hold path traversal and link attacks. Each is
// refused as a whole with a clear error, and nothing is written outside
// the target (nor inside it).
func TestE2EHostileArchives(t *testing.T) {
	u := newUser(t)
	u.configEnv = true
	key := shownKey64(t, u.ok("init").stdout)
	m := reRecipient.FindStringSubmatch(u.ok("status").stdout)
	if m == nil {
		t.Fatal("status shows no age recipient")
	}
	recipient, err := age.ParseX25519Recipient(m[1])
	if err != nil {
		t.Fatal(err)
	}

	files := t.TempDir() // the crafted backups, away from work

	type ent struct {
		typ            byte
		name, linkname string
		body           string
	}
	file := func(name string) ent { return ent{typ: tar.TypeReg, name: name, body: "pwned\n"} }
	dir := func(name string) ent { return ent{typ: tar.TypeDir, name: name} }
	symlink := func(name, to string) ent { return ent{typ: tar.TypeSymlink, name: name, linkname: to} }
	hardlink := func(name, to string) ent { return ent{typ: tar.TypeLink, name: name, linkname: to} }
	craft := func(name string, entries []ent) string {
		t.Helper()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.linkname, Mode: 0o644, ModTime: time.Now(), Format: tar.FormatPAX}
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
			if e.typ == tar.TypeReg {
				h.Size = int64(len(e.body))
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if e.typ == tar.TypeReg {
				io.WriteString(tw, e.body)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(files, name+".age")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		w, err := age.Encrypt(f, recipient)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The pipeline works: a benign crafted backup restores.
	okFile := craft("benign", []ent{dir("top/"), file("top/a.txt"), symlink("top/l", "a.txt"), hardlink("top/h", "top/a.txt")})
	benign := filepath.Join(t.TempDir(), "benign")
	u.ok("restore", okFile, "-C", benign, "--key", key)
	if b, err := os.ReadFile(filepath.Join(benign, "top", "h")); err != nil || string(b) != "pwned\n" {
		t.Fatalf("the benign crafted backup did not restore: %v", err)
	}

	// Each case restores into work/target, beside work/outside/secret.txt,
	// in a folder of its own.
	setup := func(t *testing.T) (work, outside, secret, target string) {
		work = t.TempDir()
		outside = filepath.Join(work, "outside")
		if err := os.MkdirAll(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		secret = filepath.Join(outside, "secret.txt")
		if err := os.WriteFile(secret, []byte("must stay as it is\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return work, outside, secret, filepath.Join(work, "target")
	}
	// Absolute names point into a folder made now, so that a restore that
	// followed them would be seen.
	abs := filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	absSecret := filepath.Join(abs, "secret.txt")
	if err := os.WriteFile(absSecret, []byte("must stay as it is\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	absBefore := snapshot(t, abs)
	cases := []struct {
		name    string
		entries []ent
		want    string // the reason restore gives
	}{
		{"dot-dot", []ent{file("ok.txt"), file("../evil")}, `entry "../evil": ".." path element`},
		{"dot-dot inside", []ent{dir("a/"), file("a/../../evil")}, `entry "a/../../evil": ".." path element`},
		{"absolute", []ent{file("ok.txt"), file(filepath.Join(abs, "abs-evil"))}, "absolute path"},
		{"absolute folder", []ent{dir(abs + "/evil/")}, "absolute path"},
		{"symlink escaping, then a file through it", []ent{symlink("escape", "../outside"), file("escape/evil")},
			`entry "escape": symlink to "../outside": target points outside the backup`},
		{"symlink escaping from a folder", []ent{dir("a/"), symlink("a/up", "../../outside"), file("a/up/evil")},
			"target points outside the backup"},
		{"absolute symlink, then a file through it", []ent{symlink("abs", abs), file("abs/evil")}, "absolute target"},
		{"a file through a symlink that stays inside", []ent{dir("d/"), symlink("l", "d"), file("l/evil")},
			`entry "l/evil": its folder "l" is not an earlier folder entry of the archive`},
		{"a file over a symlink to outside", []ent{symlink("s", "../outside/secret.txt"), file("s")}, "target points outside the backup"},
		{"hard link to outside", []ent{hardlink("hl", "../outside/secret.txt")}, `hard link to "../outside/secret.txt"`},
		{"hard link to an absolute path", []ent{hardlink("hl", absSecret)}, "absolute path"},
		{"hard link to a name not in the archive", []ent{hardlink("hl", "secret.txt")}, "which is not an earlier file of the archive"},
		{"hard link through a symlink", []ent{dir("d/"), symlink("d/up", ".."), hardlink("hl", "d/up/outside/secret.txt")},
			"which is not an earlier file of the archive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			work, outside, secret, target := setup(t)
			before := snapshot(t, work)
			p := craft(strings.ReplaceAll(c.name, " ", "-"), c.entries)
			r := u.run("restore", p, "-C", target, "--key", key)
			if r.code != 1 || !strings.Contains(r.stderr, "the backup's archive is not acceptable") ||
				!strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "nothing was restored") {
				t.Errorf("restore: exit %d, want 1 and a refusal saying %q:\n%s", r.code, c.want, r.stderr)
			}
			notExist(t, target)
			after := snapshot(t, work)
			// work itself changes time: the target is made and removed in it.
			delete(before, filepath.Base(work))
			delete(after, filepath.Base(work))
			for k, e := range after {
				if b, ok := before[k]; !ok || b != e {
					t.Errorf("restore wrote %s (%+v)", k, e)
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok {
					t.Errorf("restore removed %s", k)
				}
			}
			for _, f := range []string{secret, absSecret} {
				var st syscall.Stat_t
				if err := syscall.Stat(f, &st); err != nil || st.Nlink != 1 {
					t.Errorf("%s has %d links (%v)", f, st.Nlink, err)
				}
			}
			for _, evil := range []string{filepath.Join(filepath.Dir(work), "evil"), filepath.Join(outside, "evil")} {
				notExist(t, evil)
			}
			absAfter := snapshot(t, abs)
			if len(absAfter) != len(absBefore) {
				t.Errorf("restore wrote into %s: %v", abs, absAfter)
			}
		})
	}
}

// The same round trip and wrong password against the firmware in QEMU
// (through its protocol UART), when a firmware image is given the way
// firmware/qemutest takes one.
func TestE2EQEMUVault(t *testing.T) {
	img := os.Getenv("COFFER_FIRMWARE")
	if img == "" {
		t.Skip("SKIPPED: the QEMU vault variant runs when COFFER_FIRMWARE names a QEMU coffer-os.elf (`make test-firmware` builds one)")
	}
	q := os.Getenv("COFFER_QEMU")
	if q == "" {
		q = "qemu-system-arm"
	}
	qemuPath, err := exec.LookPath(q)
	if err != nil {
		t.Skipf("SKIPPED: %s not found (apt-get install qemu-system-arm)", q)
	}
	img, err = filepath.Abs(img)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "protocol.sock")
	vm := startProcIn(t, "qemu", dir, qemuPath,
		"-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-monitor", "none", "-net", "none",
		"-serial", "unix:"+sock+",server,nowait", "-serial", "stdio",
		"-semihosting", "-semihosting-config", "enable=on,userspace=off",
		"-kernel", img)
	vm.waitFor(reQEMUReady, 2*time.Minute)
	provKey := hex.EncodeToString(ed25519.NewKeyFromSeed(qemu.DevProvisioningSeed[:]).Public().(ed25519.PublicKey))

	acc := filepath.Join(dir, "accounts.json")
	tokens := newAccounts(t, acc, "quinn")
	d := startCofferd(t, acc, sock)
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "emulated"
	u.fails([]string{"the vault is INSECURE"}, "init", "--password", "--server", d.url(), "--token", tokens["quinn"], "--provisioning-key", provKey)
	u.initPassword(d.url(), tokens["quinn"], provKey, "--insecure", "--limit", "3")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)
	u.env["COFFER_PASSWORD"] = "not it"
	dst := filepath.Join(t.TempDir(), "restored")
	u.fails([]string{"wrong password: 2 of 3 tries left"}, "restore", backup, "-C", dst)
	notExist(t, dst)
	u.env["COFFER_PASSWORD"] = "emulated"
	r := u.ok("restore", backup, "-C", dst)
	if !strings.Contains(r.stderr, "NOTE: 1 failed attempt was counted") {
		t.Errorf("restore:\n%s", r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))
}
