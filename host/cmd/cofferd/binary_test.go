package main

// The built cofferd, run as an operator runs it: help and version on
// stdout, one error for a bad flag, account commands that name their file,
// a build_info metric, and no insecure vault served unless asked for.

import (
	"bytes"
	debugbuildinfo "debug/buildinfo"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/internal/buildinfo"
	"github.com/cofferhsm/coffer/internal/testbin"
)

var built = testbin.NewOnce("github.com/cofferhsm/coffer/host/cmd/cofferd")

func TestMain(m *testing.M) {
	code := m.Run()
	built.Remove()
	os.Exit(code)
}

// cofferdBin builds the command once per test run.
func cofferdBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the cofferd binary")
	}
	return built.Path(t, "cofferd")
}

type ran struct {
	code           int
	stdout, stderr string
}

// cleanEnv is the test's environment without anything that configures
// cofferd.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COFFERD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runIn runs cofferd in dir (the test's folder if "") and waits for it.
func runIn(t *testing.T, dir string, args ...string) ran {
	t.Helper()
	cmd := exec.Command(cofferdBin(t), args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return ran{code, out.String(), errb.String()}
}

// TestBinaryHelp: asking for help is not a mistake: the help goes to
// stdout (to read with a pager) and the status is 0, at the top and for
// each command.
func TestBinaryHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"account", "--help"}, {"account", "add", "-h"}, {"account", "list", "--help"}, {"device", "list", "-h"}, {"migrate", "-h"}, {"peer", "--help"}} {
		r := runIn(t, "", args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "usage: cofferd") {
			t.Errorf("cofferd %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	// The daemon's help lists its flags, including the one that lets an
	// insecure vault through.
	r := runIn(t, "", "--help")
	for _, f := range []string{"-listen", "-vault", "-db", "-host", "-peer-listen", "-peer-cert", "-tls-cert", "-allow-insecure-vault", "-version"} {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("cofferd --help lacks %s:\n%s", f, r.stdout)
		}
	}
	if r := runIn(t, "", "account", "add", "--help"); !strings.Contains(r.stdout, "-device") || !strings.Contains(r.stdout, "-db") {
		t.Errorf("cofferd account add --help:\n%s", r.stdout)
	}
}

// TestBinaryBadFlag: a flag that does not exist is said once, with the
// usage, and the status is 2.
func TestBinaryBadFlag(t *testing.T) {
	for _, args := range [][]string{{"-bogus"}, {"account", "list", "-bogus"}} {
		r := runIn(t, "", args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("cofferd %s: exit %d, stdout %q", strings.Join(args, " "), r.code, r.stdout)
		}
		if n := strings.Count(r.stderr, "-bogus"); n != 1 || !strings.Contains(r.stderr, "usage: cofferd") {
			t.Errorf("cofferd %s: -bogus said %d times:\n%s", strings.Join(args, " "), n, r.stderr)
		}
	}
}

// TestBinaryVersion: --version says what the binary was built from, as the
// toolchain recorded it in the file.
func TestBinaryVersion(t *testing.T) {
	bi, err := debugbuildinfo.ReadFile(cofferdBin(t))
	if err != nil {
		t.Fatal(err)
	}
	want := "cofferd " + buildinfo.FromBuildInfo(bi).String()
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		r := runIn(t, "", args...)
		if r.code != 0 || r.stderr != "" || strings.TrimSpace(r.stdout) != want {
			t.Errorf("cofferd %s: exit %d\nstdout: %s\nstderr: %s\nwant %s", args[0], r.code, r.stdout, r.stderr, want)
		}
	}
}

// TestBinaryUnmigratedDatabase: the account commands and the daemon work
// on the database `cofferd migrate` made; one that was never migrated (a
// typo in -db, a folder other than the daemon's) is an error that says to
// run it, not an empty list. Once migrated, the commands work.
func TestBinaryUnmigratedDatabase(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "typo.db")
	r := runIn(t, dir, "account", "list", "-db", db)
	if r.code != 1 || !strings.Contains(r.stderr, "cofferd migrate") || strings.Contains(r.stdout, "NAME") {
		t.Errorf("cofferd account list of an unmigrated database: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := runIn(t, dir, "-db", db, "-vault", "unix:"+filepath.Join(dir, "none.sock")); r.code != 1 || !strings.Contains(r.stderr, "cofferd migrate") {
		t.Errorf("cofferd serve on an unmigrated database: exit %d\nstderr: %s", r.code, r.stderr)
	}
	db = "sqlite:" + filepath.Join(dir, "cofferd.db")
	if r := runIn(t, dir, "migrate", "-db", db); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if r := runIn(t, dir, "account", "add", "-db", db, "alice"); r.code != 0 {
		t.Fatalf("account add: %+v", r)
	}
	if r := runIn(t, dir, "account", "list", "-db", db); r.code != 0 || !strings.Contains(r.stdout, "alice") {
		t.Fatalf("account list: %+v", r)
	}
}

// daemonProc is a cofferd process.
type daemonProc struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan error
}

func startDaemon(t *testing.T, dir string, args ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{done: make(chan error, 1)}
	d.cmd = exec.Command(cofferdBin(t), args...)
	d.cmd.Dir = dir
	d.cmd.Env = cleanEnv()
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("cofferd output:\n%s", d.out.String())
		}
	})
	return d
}

var reAPI = regexp.MustCompile(`msg=listening api=(127\.0\.0\.1:[0-9]+)`)

// TestBinaryRefusesInsecureVault: the software vault's identity says it is
// insecure (its keys are files on the operator's machine). A cofferd that
// was not told to serve one (a unit whose environment file went missing,
// pointed at a test socket) stops with an error instead of serving it; with
// -allow-insecure-vault it serves it, and its metrics carry build_info.
func TestBinaryRefusesInsecureVault(t *testing.T) {
	dir := t.TempDir()
	sock := softVault(t, dir)
	base := []string{"-listen", "127.0.0.1:0", "-db", migrated(t, dir), "-vault", "unix:" + sock, "-poll", "50ms"}

	d := startDaemon(t, dir, base...)
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		out := d.out.String()
		if err == nil || !strings.Contains(out, "INSECURE") || !strings.Contains(out, "-allow-insecure-vault") {
			t.Fatalf("cofferd without -allow-insecure-vault: %v\n%s", err, out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("cofferd refusing an insecure vault exited %v, want status 1", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("cofferd serves an insecure vault it was not told to allow:\n%s", d.out.String())
	}

	d = startDaemon(t, dir, append(base, "-allow-insecure-vault")...)
	var api string
	eventually(t, "cofferd to listen", func() bool {
		m := reAPI.FindStringSubmatch(d.out.String())
		if m != nil {
			api = m[1]
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("cofferd -allow-insecure-vault exited: %v\n%s", err, d.out.String())
		default:
		}
		return m != nil
	})
	var health string
	eventually(t, "the insecure vault to be connected and served", func() bool {
		resp, err := http.Get("http://" + api + "/healthz")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		health = string(b)
		return resp.StatusCode == 200 && strings.Contains(health, `"insecure":true`)
	})
	select {
	case err := <-d.done:
		d.done <- err
		t.Fatalf("cofferd -allow-insecure-vault exited once it saw the vault: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	bi, err := debugbuildinfo.ReadFile(cofferdBin(t))
	if err != nil {
		t.Fatal(err)
	}
	built := buildinfo.FromBuildInfo(bi)
	if built.Revision == "" {
		built.Revision = "unknown" // a build that stamped none
	}
	want := fmt.Sprintf(`cofferd_build_info{go_version=%q,revision=%q,version=%q} 1`, built.GoVersion, built.Revision, built.Version)
	if !strings.Contains(string(b), want) {
		t.Fatalf("metrics lack %s:\n%s", want, grepLines(string(b), "build_info"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestSystemdUnit: the unit shipped for operators reads its settings from
// an environment file that must exist (a missing one stops the start
// instead of running with none), and does not let an insecure vault
// through on its own: that is for the operator to write there.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "cofferd.service"))
	if err != nil {
		t.Fatal(err)
	}
	var envFiles int
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(l, "EnvironmentFile="); ok {
			envFiles++
			if strings.HasPrefix(v, "-") {
				t.Errorf("%s: the environment file is optional ('-'): without it cofferd starts with no settings", l)
			}
		}
		if strings.Contains(l, "ALLOW_INSECURE") || strings.Contains(l, "allow-insecure") {
			t.Errorf("the unit itself allows an insecure vault: %s", l)
		}
	}
	if envFiles == 0 {
		t.Error("the unit reads no environment file")
	}
}
