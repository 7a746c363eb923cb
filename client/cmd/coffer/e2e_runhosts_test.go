package main

// `make run HOSTS=3` (scripts/run-hosts.sh) run as a newcomer runs it, and
// what its hint says to type.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
)

// freePorts returns a loopback port base such that base+1 .. base+n are
// free now. The ports lie below Linux's ephemeral range (32768 up, by
// default), from which the kernel gives outgoing connections their local
// ports and could take one of these before the script binds it.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(32768-20000-n)
		var lns []net.Listener
		for i := 1; i <= n; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if len(lns) == n {
			return base
		}
	}
	t.Fatal("no three free consecutive ports")
	return 0
}

var (
	reHintToken = regexp.MustCompile(`--token (\S+)`)
	reHintKey   = regexp.MustCompile(`--provisioning-key ([0-9a-f]{64})`)
)

// TestRunHostsScript runs scripts/run-hosts.sh 3 as `make run HOSTS=3`
// does, waits for its ready line, does what its hint says (init through
// h1, backup, restore through h3, kill the host of the demo account's
// device: 503 naming it), then stops it with SIGINT: every process it
// started is gone.
func TestRunHostsScript(t *testing.T) {
	bin := e2eBinaries(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "..", "scripts", "run-hosts.sh"))
	if err != nil {
		t.Fatal(err)
	}
	rundir := filepath.Join(t.TempDir(), "run")
	base := freePorts(t, 3)
	var out syncbuf.Buffer
	cmd := exec.Command(script, "3", rundir, fmt.Sprintf("127.0.0.1:%d", base), bin)
	cmd.Env = e2eEnviron(t, nil)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when the script has exited
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Signal(syscall.SIGINT)
			<-done
		}
		if t.Failed() {
			t.Logf("run-hosts.sh:\n%s", out.String())
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !regexp.MustCompile(`(?m)^ready: 3 hosts, 6 vaults$`).MatchString(out.String()) {
		select {
		case <-done:
			t.Fatalf("run-hosts.sh exited: %v\n%s", waitErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run-hosts.sh not ready after 2 minutes:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	hint := out.String()
	token, key := reHintToken.FindStringSubmatch(hint), reHintKey.FindStringSubmatch(hint)
	if token == nil || key == nil {
		t.Fatalf("the hint lacks the token or the provisioning key:\n%s", hint)
	}
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", base+i) }
	for _, want := range []string{"init --server " + url(1), "config set server " + url(3), "device list -db sqlite:" + rundir + "/hosts/cofferd.db",
		"kill $(cat " + rundir + "/hosts/h1/cofferd.pid)", "Ctrl-C stops all 9 processes"} {
		if !strings.Contains(hint, want) {
			t.Fatalf("the hint lacks %q:\n%s", want, hint)
		}
	}

	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "demo password"
	u.initPassword(url(1), token[1], key[1], "--insecure")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "demo.coffer")
	u.ok("backup", src, "-o", backup)
	u.ok("config", "set", "server", url(3))
	dst := filepath.Join(t.TempDir(), "restored")
	u.ok("restore", backup, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))
	list := runTool(t, filepath.Join(bin, "cofferd"), "device", "list", "-db", "sqlite:"+filepath.Join(rundir, "hosts", "cofferd.db"))
	m := regexp.MustCompile(`(?m)^(h(\d)-[ab])\s+h\d\s+active\s+1\s`).FindStringSubmatch(list)
	if m == nil || strings.Count(list, "active") != 6 {
		t.Fatalf("device list after the demo account's first request:\n%s", list)
	}

	// The host of the demo account's device killed, as the hint says:
	// its 503 names it; the script reports it and keeps the rest.
	pidOf := func(rel string) int {
		b, err := os.ReadFile(filepath.Join(rundir, "hosts", rel))
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	home := "h" + m[2]
	if home == "h3" {
		u.ok("config", "set", "server", url(2)) // another host
	}
	if err := syscall.Kill(pidOf(home+"/cofferd.pid"), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Once the script reports the exit the process is gone, its peer
	// listener with it: the forward cannot be answered.
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), home+": h"+m[2]+"/cofferd (pid ") {
		if time.Now().After(deadline) {
			t.Fatalf("run-hosts.sh did not report %s's cofferd exiting:\n%s", home, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := u.fails([]string{"503", "host holding this account's vault device (" + home + ", device " + m[1] + ") is unreachable"},
		"restore", backup, "-C", filepath.Join(t.TempDir(), "again"))
	t.Logf("restore with %s down:\n%s", home, r.stderr)

	var pids []int
	for i := 1; i <= 3; i++ {
		for _, f := range []string{"cofferd.pid", "vault-a/vault.pid", "vault-b/vault.pid"} {
			pids = append(pids, pidOf(fmt.Sprintf("h%d/%s", i, f)))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run-hosts.sh did not stop within 30s of SIGINT")
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d still runs after run-hosts.sh stopped", p)
		}
	}
}

// alive reports whether process pid runs (a zombie does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) STATE …: comm may hold spaces and parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
