package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol"
)

// run is one coffer invocation: no terminal, environment from env.
type result struct {
	code           int
	stdout, stderr string
}

type env struct {
	t      *testing.T
	config string
	vars   map[string]string
	// logSource serves the release log to every run (pinLog).
	logSource logcheck.Source
}

func newEnv(t *testing.T) *env {
	return &env{t: t, config: filepath.Join(t.TempDir(), "cfg", "config.json"), vars: map[string]string{}}
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runCtx(context.Background(), args...)
}

func (e *env) runCtx(ctx context.Context, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return e.vars[k] }, logSource: e.logSource}
	code := c.run(ctx, append([]string{"-config", e.config}, args...))
	return result{code, out.String(), errb.String()}
}

func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("coffer %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func (e *env) fails(want string, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		e.t.Fatalf("coffer %s: exit %d, want a failure saying %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

func (e *env) configFile() *client.Config {
	e.t.Helper()
	cfg, err := client.LoadConfig(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

func tree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "photos")
	os.MkdirAll(filepath.Join(root, "2025"), 0o755)
	os.WriteFile(filepath.Join(root, "2025", "beach.jpg"), bytes.Repeat([]byte("jpeg"), 50000), 0o644)
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("remember"), 0o600)
	os.WriteFile(filepath.Join(root, "empty"), nil, 0o644)
	return root
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ (%v, %v)", a, b, err1, err2)
	}
}

var groupLine = regexp.MustCompile(`(?m)^    ([0-9A-F]{4})  ([0-9A-F]{4})  ([0-9A-F]{4})  ([0-9A-F]{4})$`)
var checkLine = regexp.MustCompile(`(?m)^    check: ([0-9A-F]{4})$`)

// shownKey reads back the key init printed, as a user would type it.
func shownKey(t *testing.T, out string) string {
	t.Helper()
	var parts []string
	for _, m := range groupLine.FindAllStringSubmatch(out, -1) {
		parts = append(parts, m[1:]...)
	}
	c := checkLine.FindStringSubmatch(out)
	if len(parts) != 16 || c == nil {
		t.Fatalf("init did not show 16 groups and a check group:\n%s", out)
	}
	return strings.ToLower(strings.Join(append(parts, c[1]), " "))
}

func TestKeyMode(t *testing.T) {
	e := newEnv(t)
	r := e.ok("init", "--qr")
	key := shownKey(t, r.stdout)
	if !strings.Contains(r.stdout, "68 in all") || !strings.Contains(r.stdout, "check group") {
		t.Errorf("init does not say the key is longer than 64 digits:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "█") {
		t.Error("no QR code")
	}
	cfg := e.configFile()
	if cfg.Mode != client.ModeKey || !strings.HasPrefix(cfg.AgeRecipient, "age1") {
		t.Fatalf("config %+v", cfg)
	}
	if b, _ := os.ReadFile(e.config); bytes.Contains(b, []byte(strings.ReplaceAll(strings.ToUpper(key), " ", ""))[:16]) {
		t.Fatal("the configuration holds the key")
	}
	if fi, _ := os.Stat(e.config); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v", fi.Mode())
	}
	e.fails("already initialised", "init")

	src := tree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	r = e.ok("backup", src, "-o", backup)
	if !strings.Contains(r.stderr, "Backed up 3 files") {
		t.Errorf("summary: %s", r.stderr)
	}
	e.fails("exists", "backup", src, "-o", backup)
	e.ok("backup", "--force", src, "-o", backup)

	// A typo is caught before any decryption, and pointed at.
	typo := []byte(key)
	typo[12] = map[bool]byte{true: '1', false: '0'}[typo[12] == '0']
	dst := t.TempDir()
	e.fails("group 3", "restore", backup, "-C", dst, "--key", string(typo))
	assertEmpty(t, dst)
	e.fails("check group is missing", "restore", backup, "-C", dst, "--key", key[:len(key)-5])

	e.ok("restore", backup, "-C", dst, "--key", key)
	sameFile(t, filepath.Join(src, "2025/beach.jpg"), filepath.Join(dst, "photos/2025/beach.jpg"))
	sameFile(t, filepath.Join(src, "notes.txt"), filepath.Join(dst, "photos/notes.txt"))
	e.fails("--force", "restore", backup, "-C", dst, "--key", key)
	e.ok("restore", backup, "-C", dst, "--key", key, "--force")

	// Without any configuration, on a new machine: the key alone.
	bare := newEnv(t)
	bare.vars["COFFER_KEY"] = strings.ToUpper(strings.ReplaceAll(key, " ", "-"))
	dst2 := t.TempDir()
	bare.ok("restore", backup, "-C", dst2)
	sameFile(t, filepath.Join(src, "notes.txt"), filepath.Join(dst2, "photos/notes.txt"))
	delete(bare.vars, "COFFER_KEY")
	bare.fails("no terminal", "restore", backup, "-C", t.TempDir())
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("%s is not empty: %v", dir, entries)
	}
}

// The exported identity decrypts a backup with age's library, and with the
// age command when it is installed.
func TestExportAgeInterop(t *testing.T) {
	e := newEnv(t)
	key := shownKey(t, e.ok("init").stdout)
	src := tree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	e.ok("backup", src, "-o", backup)
	out := e.ok("key", "export-age", "--key", key).stdout
	if !strings.Contains(out, "AGE-SECRET-KEY-1") || !strings.Contains(out, e.configFile().AgeRecipient) {
		t.Fatalf("export-age printed:\n%s", out)
	}
	idFile := filepath.Join(t.TempDir(), "identity.txt")
	os.WriteFile(idFile, []byte(out), 0o600)

	ids, err := age.ParseIdentities(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(backup)
	defer f.Close()
	pr, err := age.Decrypt(f, ids...)
	if err != nil {
		t.Fatal(err)
	}
	checkTar(t, pr, src)

	agePath, err := exec.LookPath("age")
	if err != nil {
		t.Skip("the age command is not installed; the library interop above passed")
	}
	cmd := exec.Command(agePath, "-d", "-i", idFile, backup)
	plain, err := cmd.Output()
	if err != nil {
		t.Fatalf("age -d: %v", err)
	}
	checkTar(t, bytes.NewReader(plain), src)
}

func checkTar(t *testing.T, r io.Reader, src string) {
	t.Helper()
	tr := tar.NewReader(r)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "photos/notes.txt" {
			b, _ := io.ReadAll(tr)
			found = string(b) == "remember"
		}
	}
	if !found {
		t.Error("photos/notes.txt not in the decrypted archive")
	}
}

func passwordEnv(t *testing.T, host *fakehost.Host, insecure bool, extra ...string) *env {
	t.Helper()
	e := newEnv(t)
	e.vars["COFFER_PASSWORD"] = "first password"
	args := append([]string{"init", "--password", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex()},
		e.pinLog(host).args()...)
	if insecure {
		args = append(args, "--insecure")
	}
	r := e.ok(append(args, extra...)...)
	if !strings.Contains(r.stdout, "The vault holds this account's backup key") {
		t.Fatalf("init said:\n%s", r.stdout)
	}
	return e
}

func TestPasswordMode(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{Insecure: true})

	// The insecure vault is refused without --insecure, and nothing is kept.
	e := newEnv(t)
	e.vars["COFFER_PASSWORD"] = "x"
	r := e.fails("INSECURE", "init", "--password", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex())
	if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a refused init wrote a configuration")
	}
	_ = r

	e = passwordEnv(t, host, true)
	cfg := e.configFile()
	if cfg.Mode != client.ModePassword || cfg.BundleHash == "" || !cfg.AllowInsecure || cfg.Limit != 10 || cfg.HighestStoreSequence == 0 {
		t.Fatalf("config after init: %+v", cfg)
	}

	src := tree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	e.ok("backup", src, "-o", backup) // no vault involved
	n := host.Counts()

	// A wrong password: counted, reported, nothing restored.
	e.vars["COFFER_PASSWORD"] = "not it"
	dst := t.TempDir()
	r = e.fails("wrong password: 9 of 10 tries left; 1 failed attempt since the last successful login", "restore", backup, "-C", dst)
	assertEmpty(t, dst)
	if lr := e.configFile().LastReceipt; lr == nil || lr.Kind != "attempt" || lr.TriesLeft != 9 {
		t.Errorf("last receipt after a wrong password: %+v", lr)
	}
	// A missing file costs no attempt.
	e.fails("no such file", "restore", filepath.Join(t.TempDir(), "missing.age"), "-C", dst)
	if got := host.Counts(); got[protocol.TypeLoginStart] != n[protocol.TypeLoginStart]+1 {
		t.Errorf("login-starts: %d before, %d after", n[protocol.TypeLoginStart], got[protocol.TypeLoginStart])
	}

	e.vars["COFFER_PASSWORD"] = "first password"
	r = e.ok("restore", backup, "-C", dst)
	if !strings.Contains(r.stderr, "1 failed attempt was counted") {
		t.Errorf("the release did not report the failed attempt:\n%s", r.stderr)
	}
	sameFile(t, filepath.Join(src, "2025/beach.jpg"), filepath.Join(dst, "photos/2025/beach.jpg"))

	r = e.ok("status")
	for _, want := range []string{"mode:             password", "insecure=true", "pinned bundle:    " + cfg.BundleHash,
		"last receipt:     released, 10 of 10 tries left, 1 failed attempt since the last success", "no rollback"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}

	// Change the password: the old one stops working, backups stay valid.
	e.vars["COFFER_NEW_PASSWORD"] = "second password"
	e.ok("password", "change")
	e.fails("wrong password", "key", "export-age")
	e.vars["COFFER_PASSWORD"] = "second password"
	out := e.ok("key", "export-age").stdout
	ids, err := age.ParseIdentities(strings.NewReader(out))
	if err != nil || len(ids) != 1 {
		t.Fatalf("exported identity: %v", err)
	}
	f, _ := os.Open(backup)
	if _, err := age.Decrypt(f, ids...); err != nil {
		t.Errorf("the exported identity does not open the backup: %v", err)
	}
	f.Close()

	// A new device fetches the same key.
	e2 := newEnv(t)
	e2.vars["COFFER_PASSWORD"] = "second password"
	e2.ok("init", "--existing", "--insecure", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex())
	if e2.configFile().AgeRecipient != cfg.AgeRecipient {
		t.Error("the new device backs up to another recipient")
	}

	// Delete: confirmation needed, then the key is gone for ever.
	e.fails("--yes", "delete")
	e.ok("delete", "--yes")
	if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
		t.Error("configuration kept after delete")
	}
	e2.fails("no longer holds this account's key", "restore", backup, "-C", t.TempDir())

	// The vault is replaced behind the host: refused.
	host.Replace(fakehost.Options{Insecure: true, Name: "impostor"})
	e2.fails("bundle changed", "status")
}

func TestLockoutThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{})
	e := passwordEnv(t, host, false, "--limit", "2")
	backup := filepath.Join(t.TempDir(), "b.age")
	e.ok("backup", tree(t), "-o", backup)
	e.vars["COFFER_PASSWORD"] = "guess"
	e.fails("1 of 2 tries left", "restore", backup, "-C", t.TempDir())
	e.fails("that was the last try: the vault has erased the key for ever", "restore", backup, "-C", t.TempDir())
	e.vars["COFFER_PASSWORD"] = "first password"
	e.fails("this account is locked", "restore", backup, "-C", t.TempDir())
	if r := e.ok("status"); !strings.Contains(r.stdout, "last receipt:     locked, 0 of 2 tries left, 2 failed attempts") {
		t.Errorf("status:\n%s", r.stdout)
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{}, {"frobnicate"}, {"backup"}, {"restore"}, {"key"}, {"password"}, {"init", "--password"}} {
		if r := e.run(args...); r.code != 2 || !strings.Contains(r.stderr, "usage:") {
			t.Errorf("coffer %q: exit %d, %s", args, r.code, r.stderr)
		}
	}
	e.fails("not initialised", "backup", ".", "-o", filepath.Join(t.TempDir(), "x.age"))
	e.fails("not initialised", "status")
}

// Flags may come after the arguments, as the README shows them.
func TestParseInterleaved(t *testing.T) {
	c := &cli{stderr: io.Discard}
	fset := c.flags("x")
	o := fset.String("o", "", "")
	force := fset.Bool("force", false, "")
	rest, err := parse(fset, []string{"a", "-o", "f", "b", "--force", "--", "-c"})
	if err != nil || *o != "f" || !*force || strings.Join(rest, ",") != "a,b,-c" {
		t.Fatalf("%q %q %v %v", rest, *o, *force, err)
	}
}

func TestConfigIsJSON(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	var m map[string]any
	b, _ := os.ReadFile(e.config)
	if err := json.Unmarshal(b, &m); err != nil || m["mode"] != "key" || m["version"] != 1.0 {
		t.Fatalf("%s: %v", b, err)
	}
}

// A failed or interrupted backup leaves no file, not even a partial one; an
// interrupted restore leaves nothing either.
func TestNoPartialOutput(t *testing.T) {
	e := newEnv(t)
	key := shownKey(t, e.ok("init").stdout)
	outDir := t.TempDir()
	e.fails("no such file", "backup", filepath.Join(t.TempDir(), "missing"), "-o", filepath.Join(outDir, "b.age"))
	assertEmpty(t, outDir)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := e.runCtx(ctx, "backup", tree(t), "-o", filepath.Join(outDir, "b.age")); r.code != 1 || !strings.Contains(r.stderr, "canceled") {
		t.Fatalf("interrupted backup: %+v", r)
	}
	assertEmpty(t, outDir)

	backup := filepath.Join(outDir, "b.age")
	e.ok("backup", tree(t), "-o", backup)
	dst := filepath.Join(t.TempDir(), "restore")
	if r := e.runCtx(ctx, "restore", backup, "-C", dst, "--key", key); r.code != 1 || !strings.Contains(r.stderr, "interrupted") || strings.Contains(r.stderr, "damaged") {
		t.Fatalf("interrupted restore: %+v", r)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("interrupted restore left %s", dst)
	}
}
