package main

// `coffer config`, the move from the 64-digit key to a vault without
// retyping the configuration, and a private CA for TLS to cofferd: the
// real binaries against a real cofferd and software vault.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/internal/testcert"
)

// TestE2EConfig: an account kept as the 64-digit key, whose init kept the
// server, token and provisioning key, moves into the vault with `init
// --password --from-key`, asked only for the key and a new password. Its
// token and server change with `config set`, checked with cofferd first: a
// token cofferd refuses, or another account's, changes nothing. `config
// show` never shows a token.
func TestE2EConfig(t *testing.T) {
	s := newStack(t, false, "alice", "bob")
	u := newUser(t)
	url := s.cofferd.url()

	key := shownKey64(t, u.ok("init", "--server", url, "--token", s.tokens["alice"], "--provisioning-key", s.provKey).stdout)
	recipient := u.configFile().AgeRecipient
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	u.ok("backup", src, "-o", backup)

	show := u.ok("config", "show").stdout
	for _, want := range []string{"mode:             key", url, s.provKey, "token:            set (not shown)", recipient} {
		if !strings.Contains(show, want) {
			t.Errorf("config show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, s.tokens["alice"]) {
		t.Fatalf("config show printed the token:\n%s", show)
	}

	// A token cofferd does not know: refused, nothing changed.
	r := u.fails([]string{"401", "nothing was changed"}, "config", "set", "token", "AAAA"+s.tokens["alice"][4:])
	if cfg := u.configFile(); cfg.Token != s.tokens["alice"] {
		t.Fatalf("a refused token was kept: %+v", r)
	}
	// A server where cofferd does not answer: refused.
	u.fails([]string{"unreachable", "nothing was changed"}, "config", "set", "server", "http://127.0.0.1:1")
	if cfg := u.configFile(); cfg.Server != url {
		t.Fatal("an unreachable server was kept")
	}

	// The move: no --server, --token or --provisioning-key; the key and the
	// password from the environment, as a script gives them.
	u.env["COFFER_KEY"] = key
	u.env["COFFER_PASSWORD"] = "correct horse battery staple"
	r = u.ok("init", "--password", "--from-key", "--insecure")
	if !strings.Contains(r.stdout, "moved from the 64-digit key to password mode") {
		t.Fatalf("init --from-key said:\n%s", r.stdout)
	}
	delete(u.env, "COFFER_KEY")
	cfg := u.configFile()
	if cfg.Mode != client.ModePassword || cfg.AgeRecipient != recipient || cfg.Server != url || cfg.Token != s.tokens["alice"] || cfg.UserID == "" {
		t.Fatalf("after the move: %+v", cfg)
	}
	// The old backup opens with the password now.
	dst := filepath.Join(t.TempDir(), "restored")
	u.ok("restore", backup, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
	// --from-key once moved is refused: the account is in a vault.
	u.fails([]string{"already initialised"}, "init", "--password", "--from-key")

	// Another account's token: cofferd takes it, but it names bob, not
	// this configuration's account.
	u.fails([]string{"another account's token", "nothing was changed"}, "config", "set", "token", s.tokens["bob"])
	if cfg := u.configFile(); cfg.Token != s.tokens["alice"] {
		t.Fatal("another account's token was kept")
	}
	// The same token again, and the same server under another name.
	u.ok("config", "set", "token", s.tokens["alice"])
	other := strings.Replace(url, "127.0.0.1", "localhost", 1)
	u.ok("config", "set", "server", other)
	if cfg := u.configFile(); cfg.Server != other {
		t.Fatalf("server not changed: %q", cfg.Server)
	}
	u.ok("status")
	if show := u.ok("config", "show").stdout; strings.Contains(show, s.tokens["alice"]) || !strings.Contains(show, "mode:             password") {
		t.Fatalf("config show:\n%s", show)
	}
	if r := u.run("config", "set", "colour", "blue"); r.code != 2 {
		t.Fatalf("config set colour: %+v", r)
	}
}

// TestE2EFromKeyNeedsAKeyModeAccount: --from-key with no configuration, or
// without --password, is refused before anything is asked.
func TestE2EFromKeyNeedsAKeyModeAccount(t *testing.T) {
	u := newUser(t)
	u.fails([]string{"no configuration"}, "init", "--password", "--from-key")
	if r := u.run("init", "--from-key"); r.code != 2 {
		t.Fatalf("init --from-key without --password: %+v", r)
	}
	// A key-mode account whose init kept no server: the flags must say it.
	u.ok("init")
	if r := u.run("init", "--password", "--from-key"); r.code != 2 || !strings.Contains(r.stderr, "--server") {
		t.Fatalf("--from-key without a server anywhere: %+v", r)
	}
}

// TestE2EPrivateCA: cofferd serves TLS with a certificate of a private CA.
// A client that does not trust it refuses the connection; init --ca FILE
// trusts it and keeps the file's path, so later commands connect with no
// flag; config set ca none and ca FILE take it away and back.
func TestE2EPrivateCA(t *testing.T) {
	dir := t.TempDir()
	v, provKey := newDevVault(t, filepath.Join(dir, "vault"))
	acc := filepath.Join(dir, "accounts.json")
	tokens := newAccounts(t, acc, "alice")
	caPEM, certPEM, keyPEM := testcert.New(t)
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(caFile, caPEM, 0o644)
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	p := startProc(t, "cofferd", e2eBin(t, "cofferd"), "-listen", "127.0.0.1:0", "-db", cofferdDB(acc), "-vault", "unix:"+v.sock,
		"-login-rate", "0", "-allow-insecure-vault", "-tls-cert", certFile, "-tls-key", keyFile)
	addr := p.waitFor(regexp.MustCompile(`msg=listening api=(127\.0\.0\.1:[0-9]+)`), 30*time.Second)[1]
	server := "https://" + addr
	waitHealthyTLS(t, server, caPEM)

	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "correct horse battery staple"
	args := []string{"init", "--password", "--server", server, "--token", tokens["alice"], "--provisioning-key", provKey, "--insecure"}
	u.fails([]string{"certificate"}, args...)
	notExist(t, u.config)

	// A file that holds no certificate is refused as such.
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	u.fails([]string{"no PEM certificate"}, append(args, "--ca", junk)...)

	// Relative, as a user types it: kept as an absolute path.
	rel, err := filepath.Rel(mustGetwd(t), caFile)
	if err != nil {
		t.Fatal(err)
	}
	u.initPassword(server, tokens["alice"], provKey, "--insecure", "--ca", rel)
	if cfg := u.configFile(); cfg.CA != caFile {
		t.Fatalf("configuration's ca %q, want %q", cfg.CA, caFile)
	}
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	u.ok("backup", src, "-o", backup)
	u.ok("status")
	u.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "r"))

	u.ok("config", "set", "ca", "none")
	u.fails([]string{"certificate"}, "status")
	// A backup needs no connection, hence no CA.
	u.ok("backup", src, "-o", filepath.Join(t.TempDir(), "b2.age"))
	u.ok("config", "set", "ca", caFile)
	u.ok("status")

	// The CA file gone: connections fail saying so; backups still work.
	os.Rename(caFile, caFile+".moved")
	u.fails([]string{"CA file"}, "status")
	u.ok("backup", src, "-o", filepath.Join(t.TempDir(), "b3.age"))
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// waitHealthyTLS waits until cofferd's /healthz over TLS says "ok": its
// vault connected and, from a signed status, healthy in the realm, so that
// a new account can be placed.
func waitHealthyTLS(t *testing.T, server string, caPEM []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(server + "/healthz")
		if err == nil {
			var h struct {
				Status string `json:"status"`
			}
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && h.Status == "ok" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cofferd over TLS not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
