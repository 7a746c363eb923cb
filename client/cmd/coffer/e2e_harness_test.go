package main

// The end-to-end harness: the real coffer, cofferd and softvault binaries,
// built once per test run, run as processes on loopback TCP and unix
// sockets, and coffer driven as a user drives it (a configuration file,
// passwords and keys in the environment).

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/host/state/pgtest"
	"github.com/cofferhsm/coffer/internal/testbin"
)

// e2eBuilt are coffer, cofferd, softvault, coffer-provision,
// coffer-release and coffer-witness, built once per test run.
var e2eBuilt = testbin.NewOnce(
	"github.com/cofferhsm/coffer/client/cmd/coffer",
	"github.com/cofferhsm/coffer/host/cmd/cofferd",
	"github.com/cofferhsm/coffer/applet/softvault/cmd/softvault",
	"github.com/cofferhsm/coffer/firmware/cmd/coffer-provision",
	"github.com/cofferhsm/coffer/firmware/cmd/coffer-release",
	"github.com/cofferhsm/coffer/firmware/cmd/coffer-witness")

func TestMain(m *testing.M) {
	// pgtest.Main stops the PostgreSQL server the realm tests start (if
	// any) once every test has run.
	code := pgtest.Main(m)
	e2eBuilt.Remove()
	os.Exit(code)
}

// e2eBinaries returns the folder of the built commands. Short runs skip:
// the e2e tests are processes and real Argon2id.
func e2eBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the real binaries")
	}
	return e2eBuilt.Dir(t)
}

func e2eBin(t *testing.T, name string) string {
	return filepath.Join(e2eBinaries(t), name)
}

// e2eEnviron is the environment of every process started: the test's own,
// without anything that configures coffer or cofferd, with a HOME of its
// own.
func e2eEnviron(t *testing.T, extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "COFFER") || k == "HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+t.TempDir())
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// proc is a long-running process (softvault, cofferd, QEMU).
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  syncbuf.Buffer // stdout and stderr
	done chan struct{}
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, name, "", bin, args...)
}

// startProcIn starts a process in the folder dir ("": the test's).
func startProcIn(t *testing.T, name, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = e2eEnviron(t, nil)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.out.String())
		}
	})
	return p
}

// kill ends the process at once (SIGKILL), as a crash or a power cut
// would, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// waitFor waits until the output matches re and returns the submatches.
func (p *proc) waitFor(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited before printing %v:\n%s", p.name, re, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %v within %v:\n%s", p.name, re, timeout, p.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runTool runs a one-shot command of the harness (softvault init,
// coffer-provision, cofferd account add) and returns its output.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = e2eEnviron(t, nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	reReady       = regexp.MustCompile(`msg=ready listen=`)
	reDevKey      = regexp.MustCompile(`development provisioning public key \(pin it in clients\): ([0-9a-f]{64})`)
	reKeygen      = regexp.MustCompile(`provisioning public key: ([0-9a-f]{64})`)
	reListening   = regexp.MustCompile(`msg=listening api=(127\.0\.0\.1:[0-9]+)`)
	reTokenLine   = regexp.MustCompile(`(?m)^\s+token\s+(\S+)$`)
	reUserIDLine  = regexp.MustCompile(`(?m)^\s+user id\s+([0-9a-f]+)$`)
	reGroupLine   = regexp.MustCompile(`(?m)^    ([0-9A-F]{4})  ([0-9A-F]{4})  ([0-9A-F]{4})  ([0-9A-F]{4})$`)
	reCheckLine   = regexp.MustCompile(`(?m)^    check: ([0-9A-F]{4})$`)
	reRecipient   = regexp.MustCompile(`(?m)^age recipient:\s+(age1[0-9a-z]+)$`)
	reAgeIdentity = regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]+`)
	reQEMUReady   = regexp.MustCompile(`coffer: ready: `)
)

// softVault is a software vault process serving a state folder on a unix
// socket.
type softVault struct {
	t     *testing.T
	state string
	sock  string
	proc  *proc
}

// newDevVault makes a vault with `softvault dev` (created and signed with
// a development provisioning key kept beside it) and returns it serving,
// with that key's public half.
func newDevVault(t *testing.T, dir string) (*softVault, string) {
	t.Helper()
	v := &softVault{t: t, state: filepath.Join(dir, "state"), sock: filepath.Join(dir, "vault.sock")}
	v.proc = startProc(t, "softvault", e2eBin(t, "softvault"), "dev", "-state", v.state, "-listen", "unix:"+v.sock)
	key := v.proc.waitFor(reDevKey, 30*time.Second)[1]
	v.proc.waitFor(reReady, 30*time.Second)
	return v, key
}

// newSignedVault makes a vault the way a deployment does, step by step:
// init, its identity, signed offline with provKey (coffer-provision),
// installed; not started.
func newSignedVault(t *testing.T, dir, provKey string) *softVault {
	t.Helper()
	sv := e2eBin(t, "softvault")
	v := &softVault{t: t, state: filepath.Join(dir, "state"), sock: filepath.Join(dir, "vault.sock")}
	runTool(t, sv, "init", "-state", v.state)
	if provKey != "" {
		id := filepath.Join(dir, "identity.cbor")
		bundle := filepath.Join(dir, "bundle.cbor")
		runTool(t, sv, "identity", "-state", v.state, "-o", id)
		runTool(t, e2eBin(t, "coffer-provision"), "sign", "-key", provKey, "-in", id, "-o", bundle)
		runTool(t, sv, "install", "-state", v.state, "-bundle", bundle)
	}
	return v
}

// newProvisioningKey makes a provisioning key file and returns its public
// half in hex.
func newProvisioningKey(t *testing.T, path string) string {
	t.Helper()
	return reKeygen.FindStringSubmatch(runTool(t, e2eBin(t, "coffer-provision"), "keygen", "-o", path))[1]
}

// serve starts `softvault serve` on the vault's state.
func (v *softVault) serve() {
	v.t.Helper()
	v.proc = startProc(v.t, "softvault", e2eBin(v.t, "softvault"), "serve", "-state", v.state, "-listen", "unix:"+v.sock)
	v.proc.waitFor(reReady, 30*time.Second)
}

// daemon is a cofferd process.
type daemon struct {
	t        *testing.T
	accounts string
	proc     *proc
	addr     string // 127.0.0.1:PORT
}

// cofferdDB is the SQLite state database of a cofferd whose files are
// named after path (path's extension replaced by .db).
func cofferdDB(path string) string {
	return "sqlite:" + strings.TrimSuffix(path, filepath.Ext(path)) + ".db"
}

// newAccounts makes cofferd's state database (cofferdDB(path)) if it is not
// there, with the named accounts, and returns their tokens.
func newAccounts(t *testing.T, path string, names ...string) map[string]string {
	t.Helper()
	runTool(t, e2eBin(t, "cofferd"), "migrate", "-db", cofferdDB(path))
	tokens := map[string]string{}
	for _, n := range names {
		out := runTool(t, e2eBin(t, "cofferd"), "account", "add", "-db", cofferdDB(path), n)
		m := reTokenLine.FindStringSubmatch(out)
		if m == nil || !reUserIDLine.MatchString(out) {
			t.Fatalf("cofferd account add printed:\n%s", out)
		}
		tokens[n] = m[1]
	}
	return tokens
}

// startCofferd runs cofferd on a free loopback port in front of the vault
// at the unix socket sock, a software vault, which it serves only when told
// to. Login starts are not rate-limited (the tests make many).
func startCofferd(t *testing.T, accounts, sock string, extra ...string) *daemon {
	t.Helper()
	args := append([]string{"-listen", "127.0.0.1:0", "-db", cofferdDB(accounts), "-vault", "unix:" + sock,
		"-login-rate", "0", "-log-level", "debug", "-allow-insecure-vault"}, extra...)
	d := &daemon{t: t, accounts: accounts}
	d.proc = startProc(t, "cofferd", e2eBin(t, "cofferd"), args...)
	d.addr = d.proc.waitFor(reListening, 30*time.Second)[1]
	d.waitConnected(true, 30*time.Second)
	return d
}

func (d *daemon) url() string { return "http://" + d.addr }

// health is cofferd's GET /healthz: whether its vault is connected, and
// whether the realm's registry holds it healthy, which is what placing a
// new account needs (cofferd reports it so after the first signed status
// the vault answers on a connection, up to a poll tick after connecting).
func (d *daemon) health() (connected, healthy bool, err error) {
	resp, err := http.Get(d.url() + "/healthz")
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	var h struct {
		Devices map[string]struct {
			Connected bool `json:"connected"`
		} `json:"devices"`
		Realm map[string]struct {
			Healthy bool `json:"healthy"`
		} `json:"realm"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return false, false, err
	}
	return h.Devices["vault0"].Connected, h.Realm["vault0"].Healthy, nil
}

// connected reports whether cofferd has its vault connected.
func (d *daemon) connected() bool {
	c, _, err := d.health()
	return err == nil && c
}

// waitConnected waits until cofferd reports its vault connected and healthy
// in the realm (want), or not connected (!want).
func (d *daemon) waitConnected(want bool, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var connected, healthy bool
	var err error
	reached := func() bool {
		connected, healthy, err = d.health()
		if want {
			return err == nil && connected && healthy
		}
		return err == nil && !connected
	}
	for {
		// Twice in a row: a connection cofferd makes to a proxy whose
		// vault is down is up for an instant only.
		if reached() {
			time.Sleep(50 * time.Millisecond)
			if reached() {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("cofferd: waited %v for the vault connected and healthy=%v; last saw connected=%v healthy=%v (%v)", timeout, want, connected, healthy, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// user runs coffer as a user does: its own configuration file, passwords
// and keys in the environment, no terminal.
type user struct {
	t      *testing.T
	config string
	env    map[string]string
	// configEnv passes the configuration as COFFER_CONFIG instead of
	// -config.
	configEnv bool
}

type e2eResult struct {
	code           int
	stdout, stderr string
}

func newUser(t *testing.T) *user {
	return &user{t: t, config: filepath.Join(t.TempDir(), "coffer", "config.json"), env: map[string]string{}}
}

func (u *user) run(args ...string) e2eResult {
	u.t.Helper()
	e2eBinaries(u.t) // built before the minute starts
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return u.runCtx(ctx, args...)
}

func (u *user) runCtx(ctx context.Context, args ...string) e2eResult {
	u.t.Helper()
	env := u.env
	if u.configEnv {
		env = map[string]string{"COFFER_CONFIG": u.config}
		for k, v := range u.env {
			env[k] = v
		}
	} else {
		args = append([]string{"-config", u.config}, args...)
	}
	cmd := exec.CommandContext(ctx, e2eBin(u.t, "coffer"), args...)
	cmd.Env = e2eEnviron(u.t, env)
	cmd.Stdin = strings.NewReader("")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			u.t.Fatalf("coffer %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return e2eResult{code, out.String(), errb.String()}
}

// ok runs coffer and fails the test unless it succeeds.
func (u *user) ok(args ...string) e2eResult {
	u.t.Helper()
	r := u.run(args...)
	if r.code != 0 {
		u.t.Fatalf("coffer %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs coffer and fails the test unless it exits 1 saying each of
// wants on stderr.
func (u *user) fails(wants []string, args ...string) e2eResult {
	u.t.Helper()
	r := u.run(args...)
	if r.code != 1 {
		u.t.Fatalf("coffer %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			u.t.Fatalf("coffer %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

// initPassword runs coffer init --password against cofferd.
func (u *user) initPassword(server, token, provKey string, extra ...string) e2eResult {
	u.t.Helper()
	r := u.ok(append([]string{"init", "--password", "--server", server, "--token", token, "--provisioning-key", provKey}, extra...)...)
	if !strings.Contains(r.stdout, "The vault holds this account's backup key behind your password") {
		u.t.Fatalf("init said:\n%s", r.stdout)
	}
	return r
}

// shownKey64 reads back the 64-digit key init printed, as a user would
// type it (lower case, spaces).
func shownKey64(t *testing.T, out string) string {
	t.Helper()
	var parts []string
	for _, m := range reGroupLine.FindAllStringSubmatch(out, -1) {
		parts = append(parts, m[1:]...)
	}
	c := reCheckLine.FindStringSubmatch(out)
	if len(parts) != 16 || c == nil {
		t.Fatalf("init did not show 16 groups and a check group:\n%s", out)
	}
	return strings.ToLower(strings.Join(append(parts, c[1]), " "))
}

// entry is what a restore must reproduce of one file-system entry.
type entry struct {
	kind    string // dir, file, symlink
	perm    fs.FileMode
	mtime   int64 // seconds; not for symlinks
	content string
	target  string
}

// snapshot describes the tree at root, keyed by path relative to root's
// parent (so the top folder's own name is part of each key).
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	parent := filepath.Dir(root)
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(parent, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{perm: fi.Mode().Perm(), mtime: fi.ModTime().Unix()}
		switch {
		case fi.IsDir():
			e.kind = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind, e.perm, e.mtime = "symlink", 0, 0
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.kind = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.content = string(b)
		default:
			e.kind = fi.Mode().Type().String()
		}
		m[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameTree fails the test unless the trees at a and b are identical in
// names, types, permission bits, modification times (files and folders),
// contents and symlink targets.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	x, y := snapshot(t, a), snapshot(t, b)
	for k, ex := range x {
		ey, ok := y[k]
		if !ok {
			t.Errorf("restored tree lacks %s", k)
			continue
		}
		if ex != ey {
			t.Errorf("%s differs: source %v %v mtime %d target %q (%d bytes); restored %v %v mtime %d target %q (%d bytes)",
				k, ex.kind, ex.perm, ex.mtime, ex.target, len(ex.content), ey.kind, ey.perm, ey.mtime, ey.target, len(ey.content))
		}
	}
	for k := range y {
		if _, ok := x[k]; !ok {
			t.Errorf("restored tree has %s, which the source has not", k)
		}
	}
	if len(x) < 2 {
		t.Fatalf("source tree %s is empty", a)
	}
}

// sourceTree writes a tree worth restoring: nested folders with their own
// modes, an empty file, a file over age's 64 KiB chunk, an executable, a
// private file, non-ASCII and spaced names, relative symlinks, and fixed
// modification times.
func sourceTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "documents")
	big := make([]byte, 200_000)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	files := []struct {
		name    string
		perm    fs.FileMode
		content []byte
	}{
		{"notes.txt", 0o600, []byte("remember the milk\n")},
		{"empty", 0o644, nil},
		{"photos/2025/beach.raw", 0o644, big},
		{"photos/2025/été à la plage.txt", 0o640, []byte("non-ASCII name\n")},
		{"bin/run me.sh", 0o755, []byte("#!/bin/sh\necho hi\n")},
		{"private/diary.md", 0o600, []byte("dear diary\n")},
	}
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.content, f.perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.perm); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"latest": "photos/2025/beach.raw", "photos/2025/notes": "../../notes.txt"} {
		if err := os.Symlink(target, filepath.Join(root, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Times last, deepest first, so that creating entries does not change
	// a folder's time afterwards.
	when := time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			paths = append(paths, p)
		}
		return nil
	})
	for i := len(paths) - 1; i >= 0; i-- {
		when = when.Add(time.Hour)
		if err := os.Chtimes(paths[i], when, when); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// notExist fails the test if path exists.
func notExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		entries, _ := os.ReadDir(path)
		t.Errorf("%s exists (%v)", path, entries)
	}
}
