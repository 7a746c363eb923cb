package main

// The command line's conventions, on the built binary: help on stdout with
// status 0, at the top and for each command; a mistake said once, with
// that command's usage, status 2; secrets kept out of `ps` where a script
// can do without them; files of secrets made private.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client"
)

// TestE2EHelp: --help, -h and `help` print to stdout and succeed, at the
// top and for each command; a command's help is its own, not the whole
// list.
func TestE2EHelp(t *testing.T) {
	u := newUser(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := u.run(args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "usage: coffer") || !strings.Contains(r.stdout, "restore") || !strings.Contains(r.stdout, "config") {
			t.Errorf("coffer %s: exit %d\nstdout: %s\nstderr: %s", args[0], r.code, r.stdout, r.stderr)
		}
	}
	for _, c := range []struct {
		args      []string
		want, not string
	}{
		{[]string{"backup", "--help"}, "usage: coffer backup PATH...", "coffer restore"},
		{[]string{"backup", "-h"}, "usage: coffer backup PATH...", "coffer restore"},
		{[]string{"help", "backup"}, "usage: coffer backup PATH...", "coffer restore"},
		{[]string{"restore", "--help"}, "usage: coffer restore FILE", "coffer backup"},
		{[]string{"key", "export-age", "--help"}, "usage: coffer key export-age", "coffer key rotate"},
		{[]string{"help", "key", "export-age"}, "usage: coffer key export-age", "coffer key rotate"},
		{[]string{"help", "config"}, "usage: coffer config show", "coffer backup"},
		{[]string{"realms", "burn", "--help"}, "usage: coffer realms burn NAME", "coffer realms repair"},
		{[]string{"init", "--help"}, "usage: coffer init", "coffer restore"},
	} {
		r := u.run(c.args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, c.want) || strings.Contains(r.stdout, c.not) {
			t.Errorf("coffer %s: exit %d, want %q without %q\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), r.code, c.want, c.not, r.stdout, r.stderr)
		}
	}
	// A group without its subcommand lists the subcommands.
	if r := u.run("help", "key"); r.code != 0 || !strings.Contains(r.stdout, "coffer key export-age") || !strings.Contains(r.stdout, "coffer key rotate") {
		t.Errorf("coffer help key: %+v", r)
	}
}

// TestE2EUsageErrors: a mistake on the command line exits 2, says what is
// wrong once, and shows that command's usage (not the whole help).
func TestE2EUsageErrors(t *testing.T) {
	u := newUser(t)
	for _, c := range []struct {
		args        []string
		said, usage string
	}{
		{[]string{"backup", "--bogus", "x", "-o", "y"}, "--bogus", "usage: coffer backup PATH..."},
		{[]string{"restore", "-bogus", "f"}, "-bogus", "usage: coffer restore FILE"},
		{[]string{"backup", "x"}, "-o", "usage: coffer backup PATH..."},
		{[]string{"restore"}, "FILE", "usage: coffer restore FILE"},
		{[]string{"status", "extra"}, "extra", "usage: coffer status"},
		{[]string{"key"}, "key", "usage: coffer key export-age"},
		{[]string{"key", "frobnicate"}, "frobnicate", "usage: coffer key export-age"},
	} {
		r := u.run(c.args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("coffer %s: exit %d, want 2\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), r.code, r.stdout, r.stderr)
			continue
		}
		if !strings.Contains(r.stderr, c.said) || !strings.Contains(r.stderr, c.usage) {
			t.Errorf("coffer %s: stderr lacks %q or %q:\n%s", strings.Join(c.args, " "), c.said, c.usage, r.stderr)
		}
		// That command's usage only: the whole help names every command.
		if strings.Contains(r.stderr, "vault accept-new-identity") {
			t.Errorf("coffer %s: the whole help instead of the command's usage:\n%s", strings.Join(c.args, " "), r.stderr)
		}
	}
	// A flag that does not exist is said once, not by the flag package and
	// then again.
	r := u.run("backup", "--bogus", "x", "-o", "y")
	if n := strings.Count(r.stderr, "bogus"); n != 1 {
		t.Errorf("--bogus said %d times:\n%s", n, r.stderr)
	}
	// An unknown command: the list of commands, on stderr, status 2.
	if r := u.run("frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) || !strings.Contains(r.stderr, "backup") || !strings.Contains(r.stderr, "restore") {
		t.Errorf("coffer frobnicate: %+v", r)
	}
}

// TestE2EKeyFlagWarns: --key puts the 64-digit key in the process list,
// where any user of the machine reads it; it still works (scripts), with a
// warning that names the private ways.
func TestE2EKeyFlagWarns(t *testing.T) {
	u := newUser(t)
	key := shownKey64(t, u.ok("init").stdout)
	r := u.ok("key", "export-age", "--key", key)
	if !reAgeIdentity.MatchString(r.stdout) {
		t.Fatalf("export-age --key printed:\n%s", r.stdout)
	}
	for _, w := range []string{"--key", "--key-file", "COFFER_KEY"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("--key without a warning naming %s:\n%s", w, r.stderr)
		}
	}
	// The private ways say nothing of the kind.
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	for _, r := range []e2eResult{u.ok("key", "export-age", "--key-file", keyFile), func() e2eResult {
		u.env["COFFER_KEY"] = key
		defer delete(u.env, "COFFER_KEY")
		return u.ok("key", "export-age")
	}()} {
		if strings.Contains(r.stderr, "process list") {
			t.Errorf("a warning about --key without --key:\n%s", r.stderr)
		}
	}
}

// TestE2EExportAgeToFile: `key export-age -o FILE` writes the identity to
// a file only its owner reads (0600), made new (it never follows a link
// planted at FILE, never replaces a file unless --force), as age-keygen -o
// does; --force replaces it, still 0600.
func TestE2EExportAgeToFile(t *testing.T) {
	u := newUser(t)
	key := shownKey64(t, u.ok("init").stdout)
	u.env["COFFER_KEY"] = key
	recipient := u.configFile().AgeRecipient
	dir := t.TempDir()
	out := filepath.Join(dir, "identity.txt")

	r := u.ok("key", "export-age", "-o", out)
	if reAgeIdentity.MatchString(r.stdout) {
		t.Fatalf("export-age -o also printed the identity:\n%s", r.stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil || !reAgeIdentity.Match(b) || !strings.Contains(string(b), recipient) {
		t.Fatalf("identity file: %v\n%s", err, b)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v, want 0600", fi.Mode().Perm())
	}

	// Not replaced without --force.
	os.WriteFile(out, []byte("precious"), 0o600)
	u.fails([]string{"exists"}, "key", "export-age", "-o", out)
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatalf("a refused export replaced the file: %q", b)
	}

	// A link planted where the file goes is not followed: the file it
	// points at keeps its contents, and the identity is not written
	// through it.
	target := filepath.Join(dir, "elsewhere.txt")
	os.WriteFile(target, []byte("someone else's"), 0o644)
	link := filepath.Join(dir, "link.txt")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	u.fails([]string{"exists"}, "key", "export-age", "-o", link)
	if b, _ := os.ReadFile(target); string(b) != "someone else's" {
		t.Fatalf("export-age wrote through a link: %q", b)
	}

	// --force replaces a readable file by a private one.
	os.Chmod(out, 0o644)
	u.ok("key", "export-age", "-o", out, "--force")
	if fi, _ := os.Lstat(out); fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
		t.Fatalf("--force left mode %v", fi.Mode())
	}
	if b, _ := os.ReadFile(out); !reAgeIdentity.Match(b) {
		t.Fatalf("--force wrote:\n%s", b)
	}
	// --force on the link replaces the link, not the file it points at.
	u.ok("key", "export-age", "-o", link, "--force")
	if b, _ := os.ReadFile(target); string(b) != "someone else's" {
		t.Fatalf("export-age --force wrote through a link: %q", b)
	}
}

func (u *user) configFile() *client.Config {
	u.t.Helper()
	cfg, err := client.LoadConfig(u.config)
	if err != nil {
		u.t.Fatal(err)
	}
	return cfg
}
