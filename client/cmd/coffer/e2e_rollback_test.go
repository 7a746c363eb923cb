package main

// End-to-end: the software vault's state rolled back by its operator, the
// client stopping, the operator's declaration, and the user's recovery
// (client/SPEC.md, "Recovering from a rollback"; host/OPERATIONS.md,
// "Recovering from a rollback"), with the real coffer, cofferd and
// softvault processes.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rollTo stops the vault, puts the state saved in snapshot back (store and
// anchor together: off hardware the vault cannot tell) and starts it again.
func (s *stack) rollTo(t *testing.T, snapshot string) {
	t.Helper()
	s.vault.proc.kill()
	s.cofferd.waitConnected(false, 10*time.Second)
	copyState(t, snapshot, s.vault.state)
	s.vault.serve()
	s.cofferd.waitConnected(true, 30*time.Second)
}

// saveState stops the vault, copies its state aside and starts it again.
func (s *stack) saveState(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state-copy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.vault.proc.kill()
	s.cofferd.waitConnected(false, 10*time.Second)
	copyState(t, s.vault.state, dir)
	s.vault.serve()
	s.cofferd.waitConnected(true, 30*time.Second)
	return dir
}

func readConfig(t *testing.T, u *user) string {
	t.Helper()
	b, err := os.ReadFile(u.config)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The operator restores an old copy of the vault's state: the user's
// commands stop with ROLLBACK. Without the user's word nothing the host
// does, declaration included, makes the client accept it; with it, the
// user logs in to the record the old state holds and moves the key to a
// new password, and backs up and restores as before.
func TestE2ERollbackRecovery(t *testing.T) {
	s := newStack(t, false, "alice")
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "first password, before the rollback"
	u.initPassword(s.cofferd.url(), s.tokens["alice"], s.provKey, "--insecure", "--limit", "5")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "before.age")
	u.ok("backup", src, "-o", backup)
	u.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "r1"))

	snapshot := s.saveState(t)
	// Counted after the copy: two wrong passwords and a login.
	u.env["COFFER_PASSWORD"] = "wrong guess"
	for range 2 {
		u.fails([]string{"wrong password"}, "restore", backup, "-C", filepath.Join(t.TempDir(), "x"))
	}
	u.env["COFFER_PASSWORD"] = "first password, before the rollback"
	u.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "r2"))

	s.rollTo(t, snapshot)
	r := u.fails([]string{"ROLLBACK: the vault signed store sequence", "coffer vault recover-rollback"}, "restore", backup, "-C", filepath.Join(t.TempDir(), "x"))
	u.fails([]string{"ROLLBACK"}, "status")
	stopped := readConfig(t, u)

	// No word from the user, no recovery: without a terminal and without
	// --yes it is refused, after showing what the vault signs now.
	r = u.fails([]string{"its store WENT BACK", "declared NO rollback", "accepted only on your word", "nothing was changed"}, "vault", "recover-rollback")
	if got := readConfig(t, u); got != stopped {
		t.Fatalf("a refused recovery changed the configuration:\n%s\nwas\n%s", got, stopped)
	}

	// The operator declares the rollback; cofferd serves it at once. That
	// is the operator's word, not the user's: every command still stops.
	reason := "restored the vault from the copy taken before the disk failed"
	out := runTool(t, e2eBin(t, "cofferd"), "vault", "declare-rollback", "-db", cofferdDB(s.cofferd.accounts), "-reason", reason)
	if !strings.Contains(out, "declared: device vault0") {
		t.Fatalf("declare-rollback said:\n%s", out)
	}
	u.fails([]string{"ROLLBACK"}, "restore", backup, "-C", filepath.Join(t.TempDir(), "x"))
	r = u.fails([]string{"The operator of this cofferd declared", reason, "accepted only on your word"}, "vault", "recover-rollback")
	if got := readConfig(t, u); got != stopped {
		t.Fatal("a declaration and a refused recovery changed the configuration")
	}

	// The same password again is refused: the rollback may have hidden
	// guesses at it.
	u.env["COFFER_NEW_PASSWORD"] = "first password, before the rollback"
	u.fails([]string{"choose a new password"}, "vault", "recover-rollback", "--yes")
	if got := readConfig(t, u); got != stopped {
		t.Fatal("a recovery refused for its password changed the configuration")
	}

	u.env["COFFER_NEW_PASSWORD"] = "second password, after the rollback"
	r = u.ok("vault", "recover-rollback", "--yes")
	if !strings.Contains(r.stdout, "Recovered from the rollback") || !strings.Contains(r.stdout, "every backup made so far opens as before") {
		t.Fatalf("recover-rollback said:\n%s\n%s", r.stdout, r.stderr)
	}
	// The restores that stopped at the rollback stopped at the vault's
	// signed status, before any login (Connect checks the store sequence
	// since the firmware binding): they counted nothing on the old state,
	// and the two wrong passwords the rollback undid are not there either.
	if strings.Contains(r.stderr, "failed attempt") {
		t.Errorf("recover-rollback reports failed attempts the old state should not have:\n%s", r.stderr)
	}

	// Back to work, with the new password only.
	u.env["COFFER_PASSWORD"] = "second password, after the rollback"
	after := filepath.Join(t.TempDir(), "after.age")
	u.ok("backup", src, "-o", after)
	for _, b := range []string{backup, after} {
		dst := filepath.Join(t.TempDir(), "restored")
		u.ok("restore", b, "-C", dst)
		sameTree(t, src, filepath.Join(dst, "documents"))
	}
	r = u.ok("status")
	if !strings.Contains(r.stdout, "no rollback") {
		t.Fatalf("status after the recovery:\n%s", r.stdout)
	}
	u.env["COFFER_PASSWORD"] = "first password, before the rollback"
	u.fails([]string{"wrong password"}, "restore", after, "-C", filepath.Join(t.TempDir(), "x"))
}

// The rollback goes back to before the key was registered: the vault holds
// nothing for the account, so no password opens anything and the client
// says the key is gone from the vault. The 64-digit key, which this
// account kept (it moved to a password from it), registers it again
// behind a new password.
func TestE2ERollbackLostTheRecord(t *testing.T) {
	s := newStack(t, false, "bob")
	u := newUser(t)
	key := shownKey64(t, u.ok("init").stdout)
	snapshot := s.saveState(t) // nothing registered yet
	u.env["COFFER_PASSWORD"] = "first password"
	u.env["COFFER_KEY"] = key
	u.ok("init", "--password", "--server", s.cofferd.url(), "--token", s.tokens["bob"], "--provisioning-key", s.provKey, "--insecure", "--key", key)
	delete(u.env, "COFFER_KEY")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "before.age")
	u.ok("backup", src, "-o", backup)
	u.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "r1"))

	s.rollTo(t, snapshot)
	u.fails([]string{"ROLLBACK"}, "restore", backup, "-C", filepath.Join(t.TempDir(), "x"))
	u.env["COFFER_NEW_PASSWORD"] = "second password"
	stopped := readConfig(t, u)
	u.fails([]string{"GONE from the vault", "--key-file", "Nothing was changed"}, "vault", "recover-rollback", "--yes")
	if got := readConfig(t, u); got != stopped {
		t.Fatal("a recovery that found no record changed the configuration")
	}
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := u.ok("vault", "recover-rollback", "--yes", "--key-file", keyFile)
	if !strings.Contains(r.stdout, "Recovered from the rollback") {
		t.Fatalf("recover-rollback --key-file said:\n%s\n%s", r.stdout, r.stderr)
	}
	u.env["COFFER_PASSWORD"] = "second password"
	dst := filepath.Join(t.TempDir(), "restored")
	u.ok("restore", backup, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
}

// TestE2ETTYRollbackRecoveryAsksAgain: on a terminal, a wrong password at
// the rollback recovery is asked again, with the tries left that the
// vault's state as it is now signs; the new password is not asked again,
// and the right old one then finishes the recovery.
func TestE2ETTYRollbackRecoveryAsksAgain(t *testing.T) {
	s := newStack(t, false, "alice")
	u := newUser(t)
	old := "first password, before the rollback"
	u.env["COFFER_PASSWORD"] = old
	u.initPassword(s.cofferd.url(), s.tokens["alice"], s.provKey, "--insecure", "--limit", "5")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "before.age")
	u.ok("backup", src, "-o", backup)
	snapshot := s.saveState(t)
	u.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "r1"))
	s.rollTo(t, snapshot)
	u.fails([]string{"ROLLBACK"}, "status")
	delete(u.env, "COFFER_PASSWORD") // typed at the terminal

	r := u.startTTY("vault", "recover-rollback")
	r.expect(regexp.MustCompile(`Type accept-rollback to go on: `))
	r.typeLine("accept-rollback")
	r.expect(regexp.MustCompile(`Vault password[^:]*: `))
	r.typeLine("wrong guess")
	newPW := "second password, after the rollback"
	r.expect(regexp.MustCompile(`New vault password: `))
	r.typeLine(newPW)
	r.expect(regexp.MustCompile(`New vault password again: `))
	r.typeLine(newPW)
	left := r.expect(regexp.MustCompile(`wrong password: (\d+) of 5 tries left`))[1]
	asked := r.expect(regexp.MustCompile(`Vault password[^:(]*\((\d+) of 5 tries left\): `))[1] // the old code ended before
	if asked != left {
		t.Fatalf("asked again with %s tries left, the wrong password left %s", asked, left)
	}
	r.typeLine(old)
	if code := r.wait(); code != 0 {
		t.Fatalf("recover-rollback with the right password the second time: exit %d", code)
	}
	out := r.out.String()
	if !strings.Contains(out, "Recovered from the rollback") || strings.Count(out, "New vault password: ") != 1 {
		t.Fatalf("recover-rollback at a terminal:\n%s", out)
	}
	if strings.Contains(out, "wrong guess") || strings.Contains(out, old) || strings.Contains(out, newPW) {
		t.Fatalf("a password was echoed:\n%s", out)
	}
	u.env["COFFER_PASSWORD"] = newPW
	dst := filepath.Join(t.TempDir(), "restored")
	u.ok("restore", backup, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
}
