package main

// End to end of realm changes (protocol/REALMS.md 13): the real coffer
// binary against realm processes (softvault behind cofferd, each its own
// operator): password change, a change that waits for a realm whose vault
// is down and is finished with --resume once it is back, repair onto a new
// realm after one dies, key rotation, delete.

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestE2ERealmChanges(t *testing.T) {
	rs := newRealms(t, 4) // realm-4 is the spare a repair moves to
	u, src, _ := realmsUser(t, rs[:3])
	old := u.env["COFFER_PASSWORD"]

	// A change with every realm up completes.
	u.env["COFFER_NEW_PASSWORD"] = "second password"
	r := u.ok("password", "change", "--insecure")
	t.Logf("password change:\n%s%s", r.stderr, r.stdout)
	if !strings.Contains(r.stdout, "change complete at 3 of 3 realms; your key survives the loss of 1 realm") {
		t.Fatalf("password change:\n%s", r.stdout)
	}
	u.fails([]string{"wrong password"}, "key", "export-age", "--insecure")
	u.env["COFFER_PASSWORD"] = "second password"
	u.ok("key", "export-age", "--insecure")

	// realm-3's vault down: the change waits for it; both passwords work.
	rs[2].vault.proc.kill()
	rs[2].daemon.waitConnected(false, 10*time.Second)
	u.env["COFFER_NEW_PASSWORD"] = "third password"
	r = u.ok("password", "change", "--insecure")
	t.Logf("password change with realm-3 down:\n%s", r.stdout)
	for _, want := range []string{"the new password is registered at realm-1 and realm-2; the change waits for realm-3",
		"both passwords work until it is finished: `coffer password change --resume`"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("password change with realm-3 down lacks %q:\n%s", want, r.stdout)
		}
	}
	u.ok("key", "export-age", "--insecure") // the old one still opens
	rs[2].vault.serve()
	rs[2].daemon.waitConnected(true, 30*time.Second)
	r = u.ok("password", "change", "--resume", "--insecure")
	t.Logf("--resume with realm-3 back:\n%s", r.stdout)
	if !strings.Contains(r.stdout, "change complete at 3 of 3 realms; your key survives the loss of 1 realm") {
		t.Fatalf("--resume:\n%s", r.stdout)
	}
	u.fails([]string{"wrong password"}, "key", "export-age", "--insecure")
	u.env["COFFER_PASSWORD"] = "third password"

	// Cut short again (realm-3 down), then finished by a plain recovery:
	// key export-age carries the change forward and says so (C6).
	rs[2].vault.proc.kill()
	rs[2].daemon.waitConnected(false, 10*time.Second)
	u.env["COFFER_NEW_PASSWORD"] = "fourth password"
	u.ok("password", "change", "--insecure")
	rs[2].vault.serve()
	rs[2].daemon.waitConnected(true, 30*time.Second)
	r = u.ok("key", "export-age", "--insecure")
	t.Logf("a recovery with a change unfinished:\n%s", r.stderr)
	for _, want := range []string{"an unfinished change of your key is on this device", "change complete at 3 of 3 realms"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("key export-age with a change unfinished lacks %q:\n%s", want, r.stderr)
		}
	}
	u.env["COFFER_PASSWORD"] = "fourth password"
	r = u.ok("password", "change", "--resume", "--insecure")
	if !strings.Contains(r.stdout, "no unfinished change: nothing to resume; your key survives the loss of 1 realm") {
		t.Fatalf("--resume with nothing to finish:\n%s", r.stdout)
	}

	// realm-3 dies for good: repair onto realm-1, realm-2 and realm-4.
	rs[2].vault.proc.kill()
	rs[2].daemon.proc.kill()
	file := writeRealmsFile(t, []*e2eRealm{rs[0], rs[1], rs[3]})
	r = u.ok("realms", "repair", "--realms", file, "--insecure")
	t.Logf("realms repair:\n%s%s", r.stderr, r.stdout)
	for _, want := range []string{"repair complete at 3 of 3 realms; your key survives the loss of 1 realm",
		"repair cannot erase the old share at realm-3", "rotate the key: `coffer key rotate`"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("realms repair lacks %q:\n%s", want, r.stdout)
		}
	}
	r = u.ok("realms", "--insecure")
	if !strings.Contains(r.stdout, "realm realm-4\n  reachable:      yes") || strings.Contains(r.stdout, "realm realm-3\n") {
		t.Fatalf("coffer realms after the repair:\n%s", r.stdout)
	}

	// Key rotation: a new K under the same password, a new set code; new
	// backups go to the new key and restore.
	codeBefore := regexp.MustCompile(`(?m)^set code:\s+(\S+)$`).FindStringSubmatch(r.stdout)
	r = u.ok("key", "rotate", "--insecure")
	t.Logf("key rotate:\n%s", r.stdout)
	code := regexp.MustCompile(`new set code: (\S+)`).FindStringSubmatch(r.stdout)
	if !strings.Contains(r.stdout, "rotate complete at 3 of 3 realms") || code == nil || codeBefore == nil || code[1] == codeBefore[1] {
		t.Fatalf("key rotate:\n%s", r.stdout)
	}
	backup := filepath.Join(t.TempDir(), "after-rotation.age")
	u.ok("backup", src, "-o", backup)
	out := filepath.Join(t.TempDir(), "out")
	u.ok("restore", backup, "-C", out, "--insecure")
	sameTree(t, src, filepath.Join(out, "documents"))

	// Delete: erased at every realm; the password opens nothing after.
	r = u.ok("delete", "--yes", "--insecure")
	t.Logf("delete:\n%s", r.stdout)
	if !strings.Contains(r.stdout, "your key is deleted at all 3 realms") {
		t.Fatalf("delete:\n%s", r.stdout)
	}
	_ = old
	u.fails([]string{"no version of your key"}, "key", "export-age", "--insecure")
}

// TestE2ETTYRealmChangesAskAgain: on a terminal, the realm commands that
// check the password before they change anything (realms repair, key
// rotate, delete) ask again after a wrong one, showing the tries left
// across the realms, and the right one then completes the command. The
// password is never echoed.
func TestE2ETTYRealmChangesAskAgain(t *testing.T) {
	rs := newRealms(t, 3)
	u, _, _ := realmsUser(t, rs)
	right := u.env["COFFER_PASSWORD"]
	delete(u.env, "COFFER_PASSWORD") // typed at the terminal
	set := writeRealmsFile(t, rs)
	rePrompt := regexp.MustCompile(`Password \((\d+) tries? left across the realms\): `)
	reWrong := regexp.MustCompile(`wrong password; (\d+) tries? left across the realms`)
	for i, tc := range []struct {
		args    []string
		confirm string // typed before the password, if asked
		want    string // in what the terminal shows once it is done
	}{
		{[]string{"realms", "repair", "--realms", set}, "", "repair complete at 3 of 3 realms"},
		{[]string{"key", "rotate"}, "", "rotate complete at 3 of 3 realms"},
		{[]string{"delete"}, "delete", "your key is deleted at all 3 realms"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			u.t = t
			r := u.startTTY(append(tc.args, "--insecure")...)
			if tc.confirm != "" {
				r.expect(regexp.MustCompile(`Type ` + tc.confirm + ` to go on: `))
				r.typeLine(tc.confirm)
			}
			r.expect(regexp.MustCompile(`Password[^:]*: `))
			wrong := fmt.Sprintf("wrong horse %d", i)
			r.typeLine(wrong)
			left := r.expect(reWrong)[1]
			asked := r.expect(rePrompt)[1] // the old code ended here
			if asked != left {
				t.Fatalf("asked again with %s tries left, the wrong password left %s", asked, left)
			}
			r.typeLine(right)
			if code := r.wait(); code != 0 {
				t.Fatalf("coffer %s with the right password the second time: exit %d", strings.Join(tc.args, " "), code)
			}
			out := r.out.String()
			if !strings.Contains(out, tc.want) {
				t.Fatalf("coffer %s lacks %q:\n%s", strings.Join(tc.args, " "), tc.want, out)
			}
			if strings.Contains(out, wrong) || strings.Contains(out, right) {
				t.Fatalf("a password was echoed:\n%s", out)
			}
		})
	}
}

// TestE2ETTYRealmDeleteCutShort: a delete cut short that left fewer than t
// realms holding the key evaluates no password, and no count of tries
// stops it: finished again on a terminal, the password is asked once and
// the delete reports where the key may still be.
func TestE2ETTYRealmDeleteCutShort(t *testing.T) {
	rs := newRealms(t, 3)
	u, _, _ := realmsUser(t, rs)
	rs[2].vault.proc.kill()
	rs[2].daemon.waitConnected(false, 10*time.Second)
	u.fails([]string{"the delete is not finished"}, "delete", "--yes", "--insecure")
	rs[2].vault.serve()
	rs[2].daemon.waitConnected(true, 30*time.Second)

	delete(u.env, "COFFER_PASSWORD")
	r := u.startTTY("delete", "--yes", "--insecure")
	r.expect(regexp.MustCompile(`Password: `))
	r.typeLine("any password: none is evaluated")
	if code := r.wait(); code != 1 {
		t.Fatalf("delete again: exit %d", code)
	}
	out := r.out.String()
	if !strings.Contains(out, "the delete is not finished") || !strings.Contains(out, "realm-3") || strings.Contains(out, "cannot recover your key now") {
		t.Fatalf("delete again, at a terminal:\n%s", out)
	}
}
