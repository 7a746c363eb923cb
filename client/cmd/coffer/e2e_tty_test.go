package main

// coffer at a terminal: the built binary on a pseudo-terminal, driven as a
// user types. What the terminal echoes is what a shoulder-surfer or a
// screen recording sees: secrets (the 64-digit key, a group of it,
// passwords) must not be echoed; answers to questions must be.

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
)

// ttyRun is coffer running on a pseudo-terminal.
type ttyRun struct {
	t    *testing.T
	out  syncbuf.Buffer // everything the terminal showed, echo included
	send func(string)
	done chan int // the exit status
	seen int      // how far expect has read
}

// startTTY runs coffer as u on a new pseudo-terminal: stdin, stdout and
// stderr are the terminal.
func (u *user) startTTY(args ...string) *ttyRun {
	u.t.Helper()
	bin := e2eBin(u.t, "coffer")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, append([]string{"-config", u.config}, args...)...)
	cmd.Env = e2eEnviron(u.t, u.env)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		cancel()
		u.t.Fatal(err)
	}
	r := &ttyRun{t: u.t, done: make(chan int, 1)}
	r.send = func(s string) {
		if _, err := f.Write([]byte(s)); err != nil {
			u.t.Errorf("typing %q: %v", s, err)
		}
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			r.out.Write(b[:n])
			if err != nil {
				return // EIO once the process has gone
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		<-read
		f.Close()
		cancel()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		r.done <- code
	}()
	u.t.Cleanup(func() {
		cancel()
		if u.t.Failed() {
			u.t.Logf("terminal:\n%s", r.out.String())
		}
	})
	return r
}

// expect waits for re in what the terminal shows after the last match,
// and returns its submatches.
func (r *ttyRun) expect(re *regexp.Regexp) []string {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := r.out.String()
		if loc := re.FindStringSubmatchIndex(s[r.seen:]); loc != nil {
			m := re.FindStringSubmatch(s[r.seen:])
			r.seen += loc[1]
			return m
		}
		select {
		case code := <-r.done:
			r.done <- code
			if s := r.out.String(); re.MatchString(s[r.seen:]) {
				continue
			}
			r.t.Fatalf("coffer exited (%d) before showing %v:\n%s", code, re, r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("coffer did not show %v:\n%s", re, r.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// typeLine types s and Enter.
func (r *ttyRun) typeLine(s string) {
	r.send(s + "\r")
}

// wait returns the exit status.
func (r *ttyRun) wait() int {
	r.t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(2 * time.Minute):
		r.t.Fatalf("coffer did not exit:\n%s", r.out.String())
		return 0
	}
}

var (
	reTypeGroup = regexp.MustCompile(`type group ([0-9]+) of the key[^:]*: `)
	reNotGroup  = regexp.MustCompile(`That is not group [0-9]+\.`)
)

// shownGroups reads the 16 groups init showed, as printed.
func shownGroups(t *testing.T, out string) []string {
	t.Helper()
	var g []string
	for _, m := range reGroupLine.FindAllStringSubmatch(strings.ReplaceAll(out, "\r", ""), -1) {
		g = append(g, m[1:]...)
	}
	if len(g) != 16 {
		t.Fatalf("init showed %d groups:\n%s", len(g), out)
	}
	return g
}

// TestE2ETTYKeyTypedBack: at a terminal, init in key mode asks for a group
// of the key it just showed, chosen at random, typed blind. The right
// group finishes init; three wrong answers leave nothing behind (no backup
// relies on a key nobody wrote down). Without a terminal, init says it did
// not ask.
func TestE2ETTYKeyTypedBack(t *testing.T) {
	u := newUser(t)
	r := u.startTTY("init")
	n := r.expect(reTypeGroup)[1]
	groups := shownGroups(t, r.out.String())
	want := groups[atoi(t, n)-1]
	before := len(r.out.String())
	typed := strings.ToLower(want[:2]) + " " + want[2:] // as a user types it
	r.typeLine(typed)
	if code := r.wait(); code != 0 {
		t.Fatalf("init with the right group: exit %d", code)
	}
	// The whole typed line, space included: two hex digits alone also turn
	// up by chance in the age recipient printed after it.
	if after := r.out.String()[before:]; strings.Contains(after, typed) {
		t.Fatalf("the typed group was echoed:\n%q", after)
	}
	if cfg := u.configFile(); cfg.Mode != "key" {
		t.Fatalf("configuration: %+v", cfg)
	}

	// Three wrong answers: refused, and the configuration is removed.
	u = newUser(t)
	r = u.startTTY("init")
	for i := 0; i < 3; i++ {
		n := r.expect(reTypeGroup)[1]
		groups := shownGroups(t, r.out.String())
		wrong := []byte(groups[atoi(t, n)-1])
		wrong[0] = map[bool]byte{true: '1', false: '0'}[wrong[0] == '0']
		r.typeLine(string(wrong))
		if i < 2 {
			r.expect(reNotGroup)
		}
	}
	if code := r.wait(); code != 1 || !strings.Contains(r.out.String(), "nothing was kept") {
		t.Fatalf("init with wrong groups: exit %d", code)
	}
	notExist(t, u.config)

	// No terminal: not asked, and said so.
	u = newUser(t)
	res := u.ok("init")
	if !strings.Contains(res.stderr, "no terminal") {
		t.Fatalf("init without a terminal does not say it did not ask:\n%s", res.stderr)
	}
}

// TestE2ETTYSecretsBlindAnswersEchoed: the 64-digit key and passwords are
// typed blind; the answer to "Type delete" and "Use it anyway?" is echoed,
// as any answer to a question. A weak password typed at the terminal is
// warned about and used only if the user says so.
func TestE2ETTYSecretsBlindAnswersEchoed(t *testing.T) {
	// The 64-digit key, typed blind at restore.
	u := newUser(t)
	key := shownKey64(t, u.ok("init").stdout)
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "b.age")
	u.ok("backup", src, "-o", backup)
	r := u.startTTY("restore", backup, "-C", filepath.Join(t.TempDir(), "r"))
	r.expect(regexp.MustCompile(`Your 64-digit key[^:]*: `))
	before := len(r.out.String())
	r.typeLine(key)
	if code := r.wait(); code != 0 {
		t.Fatalf("restore with the typed key: exit %d", code)
	}
	if after := r.out.String()[before:]; strings.Contains(strings.ToLower(after), key[:9]) {
		t.Fatalf("the typed key was echoed:\n%q", after)
	}

	s := newStack(t, false, "alice")
	u = newUser(t)
	initArgs := []string{"init", "--password", "--server", s.cofferd.url(), "--token", s.tokens["alice"], "--provisioning-key", s.provKey, "--insecure"}

	// A weak password, typed: warned, asked, refused on "n"; nothing
	// registered.
	r = u.startTTY(initArgs...)
	r.expect(regexp.MustCompile(`New vault password: `))
	r.typeLine("password1")
	r.expect(regexp.MustCompile(`New vault password again: `))
	r.typeLine("password1")
	r.expect(regexp.MustCompile(`weak`))
	r.expect(regexp.MustCompile(`Use it anyway\? \[y/N\] `))
	r.typeLine("n")
	if code := r.wait(); code != 1 || !strings.Contains(r.out.String(), "weak password not used") {
		t.Fatalf("weak password refused: exit %d", code)
	}
	if strings.Contains(r.out.String(), "password1") {
		t.Fatalf("the password was echoed:\n%s", r.out.String())
	}
	notExist(t, u.config)

	// A strong one: no question.
	r = u.startTTY(initArgs...)
	r.expect(regexp.MustCompile(`New vault password: `))
	r.typeLine("violet quarry tundra hopscotch")
	r.expect(regexp.MustCompile(`New vault password again: `))
	r.typeLine("violet quarry tundra hopscotch")
	// The warning is looked for by its words, not by "weak" alone: the
	// output ends with the age recipient, 58 random bech32 characters, in
	// which "weak" turns up about once in 20,000 runs.
	if code := r.wait(); code != 0 || strings.Contains(r.out.String(), "password is weak") || strings.Contains(r.out.String(), "Use it anyway") ||
		strings.Contains(r.out.String(), "violet") {
		t.Fatalf("init with a strong password: exit %d\n%s", code, r.out.String())
	}

	// "Type delete": the answer is echoed, and a wrong one deletes
	// nothing.
	r = u.startTTY("delete")
	r.expect(regexp.MustCompile(`Type delete to go on: `))
	r.typeLine("delet")
	if code := r.wait(); code != 1 || !strings.Contains(r.out.String(), "not confirmed") {
		t.Fatalf("delete not confirmed: exit %d", code)
	}
	if !regexp.MustCompile(`Type delete to go on: delet\r?\n`).MatchString(r.out.String()) {
		t.Fatalf("the answer to \"Type delete\" was not echoed:\n%q", r.out.String())
	}
	u.env["COFFER_PASSWORD"] = "violet quarry tundra hopscotch"
	u.ok("status")
}
