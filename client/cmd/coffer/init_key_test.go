package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// init --password --key puts an existing 64-digit key in the vault: an
// account moves from the 64-digit key to password mode and its backups stay
// readable; a typo, another account's key or a password-mode account are
// refused before anything reaches the vault.
func TestInitPasswordWithExistingKey(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{})
	e := newEnv(t)
	vaultArgs := append([]string{"--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex()}, e.pinLog(host).args()...)

	key := shownKey(t, e.ok("init").stdout)
	recipient := e.configFile().AgeRecipient
	src := tree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	e.ok("backup", src, "-o", backup)
	e.vars["COFFER_PASSWORD"] = "a password"
	registers := func() int { return host.Counts()[protocol.TypeRegisterStart] }

	// Without --password, or with --existing, --key means nothing.
	if r := e.run(append([]string{"init", "--key", key}, vaultArgs...)...); r.code != 2 || !strings.Contains(r.stderr, "--key and --key-file are for init --password") {
		t.Errorf("init --key without --password: %+v", r)
	}
	if r := e.run(append([]string{"init", "--existing", "--key", key}, vaultArgs...)...); r.code != 2 {
		t.Errorf("init --existing --key: %+v", r)
	}

	// A typo: the check group catches it, nothing is sent, nothing changes.
	typo := []byte(key)
	typo[3] = map[bool]byte{true: 'a', false: 'b'}[typo[3] == 'b']
	e.fails("check group does not match", append([]string{"init", "--password", "--key", string(typo)}, vaultArgs...)...)
	// Another valid key is not this account's.
	other, err := client.NewBackupKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fails("this is not this account's key", append([]string{"init", "--password", "--key", other.KeyText()}, vaultArgs...)...)
	if n := registers(); n != 0 {
		t.Fatalf("%d registrations reached the vault", n)
	}
	if cfg := e.configFile(); cfg.Mode != client.ModeKey || cfg.AgeRecipient != recipient {
		t.Fatalf("a refused init changed the configuration: %+v", cfg)
	}

	// The move, with the key from a file.
	keyFile := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(keyFile, []byte(strings.ToUpper(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.ok(append([]string{"init", "--password", "--key-file", keyFile}, vaultArgs...)...)
	if !strings.Contains(r.stdout, "moved from the 64-digit key to password mode") || !strings.Contains(r.stdout, "the 64-digit key you gave") {
		t.Errorf("init said:\n%s", r.stdout)
	}
	if cfg := e.configFile(); cfg.Mode != client.ModePassword || cfg.AgeRecipient != recipient {
		t.Fatalf("configuration after the move: %+v", cfg)
	}
	dst := t.TempDir()
	e.ok("restore", backup, "-C", dst) // through the vault, with the password
	sameFile(t, filepath.Join(src, "notes.txt"), filepath.Join(dst, "photos/notes.txt"))

	// Now in password mode: init refuses, with or without a key.
	e.fails("already initialised", append([]string{"init", "--password", "--key", key}, vaultArgs...)...)

	// On a fresh configuration, the key is stored as given.
	e2 := newEnv(t)
	e2.vars["COFFER_PASSWORD"] = "another password"
	host2 := fakehost.New(t, fakehost.Options{})
	e2.ok(append([]string{"init", "--password", "--key", other.KeyText(), "--server", host2.URL, "--token", host2.Token, "--provisioning-key", host2.ProvisioningKeyHex()},
		e2.pinLog(host2).args()...)...)
	want, _ := other.AgeRecipient()
	if got := e2.configFile().AgeRecipient; got != want {
		t.Errorf("recipient %s, want the given key's %s", got, want)
	}
	out := e2.ok("key", "export-age").stdout
	if !strings.Contains(out, other.AgeIdentityString()) {
		t.Error("the vault did not release the key given at init")
	}
}

// config set token takes the word after "token" as the token, even one
// beginning with '-': a flag parser would call it an unknown flag and print
// it, secret as it is, in the error. Flags after it, and "--" before it,
// still work.
func TestConfigSetTokenBeginningWithDash(t *testing.T) {
	host := fakehost.New(t, fakehost.Options{})
	dashed := "-" + host.Token[1:]
	host.AddToken(dashed, host.UserID)
	e := newEnv(t)
	e.ok("init")
	e.ok("config", "set", "server", host.URL)

	e.ok("config", "set", "token", dashed, "--config", e.config)
	if got := e.configFile().Token; got != dashed {
		t.Fatalf("the token kept is not the one given (%d bytes, want %d)", len(got), len(dashed))
	}
	e.ok("config", "set", "token", "--", host.Token)
	if e.configFile().Token != host.Token {
		t.Fatal("config set token -- TOKEN did not set TOKEN")
	}

	unknown := "-" + strings.Repeat("7", len(dashed)-1)
	r := e.fails("401", "config", "set", "token", unknown)
	if strings.Contains(r.stdout+r.stderr, unknown[1:9]) {
		t.Fatalf("a refused token was printed:\n%s%s", r.stdout, r.stderr)
	}
	if e.configFile().Token != host.Token {
		t.Fatal("a refused token was kept")
	}
}
