package main

// End to end (issue 12): passwords typed at a terminal. The real cofferd
// and softvault binaries as processes; coffer runs in this process with a
// scripted terminal (cli.terminal), since the harness gives the binary none,
// through an HTTP hop the test controls (the host an operator runs), which
// counts the requests it forwards and may answer in cofferd's place.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// terminal is a scripted user at a terminal: it answers each prompt with
// the next line and records the prompts. Out of lines, it fails the read,
// as a closed terminal does.
type terminal struct {
	mu      sync.Mutex
	lines   []string
	prompts []string
}

func typing(lines ...string) *terminal { return &terminal{lines: lines} }

func (tm *terminal) read(prompt string) ([]byte, error) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.prompts = append(tm.prompts, prompt)
	if len(tm.lines) == 0 {
		return nil, io.EOF
	}
	l := tm.lines[0]
	tm.lines = tm.lines[1:]
	return []byte(l), nil
}

// ask answers an echoed question (a confirmation) from the same script.
func (tm *terminal) ask(prompt string) (string, error) {
	b, err := tm.read(prompt)
	return string(b), err
}

func (tm *terminal) transcript() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return strings.Join(tm.prompts, "\n")
}

// atTerminal runs coffer in this process as u, with tm as its terminal and
// u's environment, except the passwords (a terminal user types them).
func (u *user) atTerminal(tm *terminal, args ...string) e2eResult {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, terminal: tm.read, ask: tm.ask, getenv: func(k string) string {
		if k == "COFFER_PASSWORD" || k == "COFFER_NEW_PASSWORD" {
			return ""
		}
		return u.env[k]
	}}
	code := c.run(ctx, append([]string{"-config", u.config}, args...))
	return e2eResult{code, out.String(), errb.String()}
}

// hop is the HTTP hop between coffer and cofferd. answer, if set, sees
// every vault request first and may answer it itself (returning true);
// forward sends a request on to cofferd and returns cofferd's answer.
type hop struct {
	t      *testing.T
	srv    *httptest.Server
	target string

	mu        sync.Mutex
	forwarded map[protocol.Type]int
	answer    func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool
}

func startHop(t *testing.T, target string) *hop {
	h := &hop{t: t, target: target, forwarded: map[protocol.Type]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hop) url() string { return h.srv.URL }

func (h *hop) count(typ protocol.Type) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.forwarded[typ]
}

func (h *hop) set(f func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool) {
	h.mu.Lock()
	h.answer = f
	h.mu.Unlock()
}

func (h *hop) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	typ, _ := protocol.PeekType(body)
	forward := func() (int, http.Header, []byte) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, h.target+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return http.StatusBadGateway, http.Header{}, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if r.URL.Path == "/v1/vault" {
			h.mu.Lock()
			h.forwarded[typ]++
			h.mu.Unlock()
		}
		return resp.StatusCode, resp.Header, b
	}
	h.mu.Lock()
	answer := h.answer
	h.mu.Unlock()
	if r.URL.Path == "/v1/vault" && answer != nil && answer(w, typ, body, forward) {
		return
	}
	status, hdr, b := forward()
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	w.Write(b)
}

// passThrough writes cofferd's answer as it came.
func passThrough(w http.ResponseWriter, status int, hdr http.Header, b []byte) {
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	w.Write(b)
}

func tooMany(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write([]byte(`{"error":"too many login starts"}`))
}

// passwordStack is a vault, cofferd, and the hop in front; the user has
// registered "right" with limit and made a backup.
func passwordStack(t *testing.T, limit int) (*hop, *user, string, string) {
	t.Helper()
	s := newStack(t, false, "alice")
	h := startHop(t, s.cofferd.url())
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "right"
	u.initPassword(h.url(), s.tokens["alice"], s.provKey, "--insecure", "--limit", fmt.Sprint(limit))
	delete(u.env, "COFFER_PASSWORD")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	u.ok("backup", src, "-o", backup)
	return h, u, src, backup
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// On a terminal a wrong password is asked again, with the vault's signed
// count of tries in the prompt; a password refused once is never sent
// again; before the last try the user must type "last try". A script gets
// one try, as before.
func TestE2EPasswordAskedAgainOnATerminal(t *testing.T) {
	h, u, src, backup := passwordStack(t, 3)

	// A script: one try, exit 1, as before.
	u.env["COFFER_PASSWORD"] = "wrong 0"
	u.fails([]string{"wrong password: 2 of 3 tries left"}, "restore", backup, "-C", t.TempDir())
	delete(u.env, "COFFER_PASSWORD")

	// At a terminal: a wrong password is asked again; typed again, it is
	// not sent; the last try needs "last try".
	dst := filepath.Join(t.TempDir(), "out")
	tm := typing("wrong 1", "wrong 1", "right", "last try")
	r := u.atTerminal(tm, "restore", backup, "-C", dst)
	t.Logf("prompts:\n%s\nstderr:\n%s", tm.transcript(), r.stderr)
	if r.code != 0 {
		t.Fatalf("restore at a terminal: exit %d\n%s", r.code, r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))
	mustContain(t, "the prompts", tm.transcript(), "Vault password (2 of 3 tries left): ", "Vault password (1 of 3 tries left): ",
		"Type 'last try' to go on: ")
	mustContain(t, "stderr", r.stderr, "already tried in this run and refused; it was not sent again",
		"wrong password: 1 of 3 tries left", "This is your last try")
	if n := h.count(protocol.TypeLoginStart); n != 1+2 {
		t.Fatalf("%d login starts reached cofferd, want 3 (the script's, wrong 1, right)", n)
	}

	// The live count agrees with the restore's release receipt: confirmed,
	// so every try is back and no failure is held against the user.
	mustContain(t, "status after the restore", u.ok("status").stdout,
		"last receipt:     released, 3 of 3 tries left, 2 failed attempts since the last success",
		"tries left now:   3 of 3, 0 failed attempts since the last success")

	// Declining the last try sends nothing.
	u.env["COFFER_PASSWORD"] = "wrong 3"
	u.fails([]string{"wrong password: 2 of 3 tries left"}, "restore", backup, "-C", t.TempDir())
	u.env["COFFER_PASSWORD"] = "wrong 4"
	u.fails([]string{"wrong password: 1 of 3 tries left"}, "restore", backup, "-C", t.TempDir())
	delete(u.env, "COFFER_PASSWORD")
	before := h.count(protocol.TypeLoginStart)
	tm = typing("right", "no")
	r = u.atTerminal(tm, "key", "export-age")
	if r.code != 1 || !strings.Contains(r.stderr, "not confirmed; the password was not sent") || h.count(protocol.TypeLoginStart) != before {
		t.Fatalf("a declined last try: exit %d, %d login starts sent\n%s", r.code, h.count(protocol.TypeLoginStart)-before, r.stderr)
	}

	// `coffer status` shows the live count, and it agrees with the last
	// receipt (the check would refuse it otherwise).
	st := u.ok("status").stdout
	mustContain(t, "status", st, "last receipt:     attempt, 1 of 3 tries left", "tries left now:   1 of 3, 2 failed attempts since the last success",
		"signed count of tries verified")
}

// Passwords typed twice that differ are asked again (init, password
// change); a wrong current password is asked again, on a new device too.
func TestE2ETypedTwiceAndChangedOnATerminal(t *testing.T) {
	s := newStack(t, false, "alice")
	u := newUser(t)
	tm := typing("first", "frist", "first", "first", "y") // y: use the weak password anyway
	r := u.atTerminal(tm, "init", "--password", "--server", s.cofferd.url(), "--token", s.tokens["alice"],
		"--provisioning-key", s.provKey, "--insecure", "--limit", "4")
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	mustContain(t, "init's stderr", r.stderr, "The two passwords differ; type them again")

	// A new device: wrong, then right.
	u2 := newUser(t)
	tm = typing("frist", "first")
	r = u2.atTerminal(tm, "init", "--existing", "--server", s.cofferd.url(), "--token", s.tokens["alice"],
		"--provisioning-key", s.provKey, "--insecure")
	if r.code != 0 {
		t.Fatalf("init --existing: exit %d\n%s", r.code, r.stderr)
	}
	mustContain(t, "init --existing", tm.transcript()+r.stderr, "Vault password (4 of 4 tries left): ", "wrong password: 3 of 4 tries left")

	// Password change: the current one wrong then right, the new one
	// mistyped once.
	tm = typing("wrong", "first", "second", "secnod", "second", "second", "y")
	r = u.atTerminal(tm, "password", "change")
	if r.code != 0 {
		t.Fatalf("password change: exit %d\n%s\nprompts:\n%s", r.code, r.stderr, tm.transcript())
	}
	mustContain(t, "password change", r.stderr+r.stdout, "wrong password: 3 of 4 tries left", "The two passwords differ", "Password changed")
	u.env["COFFER_PASSWORD"] = "second"
	u.ok("key", "export-age")
}

// What an operator's host can do to the loop, and what the client does:
// a 429 after the KE3 was relayed is not retried; a 429 after the KE1 was
// relayed (counted) is caught by the signed count and not retried; an
// honest 429 before relaying is retried once the signed count shows nothing
// moved; a tampered KE2 (the host makes a right password look wrong) does
// not get the same password sent again; a forged count is never shown as
// the vault's.
func TestE2EHostileHostAndTheLoop(t *testing.T) {
	h, u, src, backup := passwordStack(t, 5)

	// 429 after KE3: the attempt was counted at KE1 and the login may even
	// have completed: nothing is sent again.
	h.set(func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool {
		if typ != protocol.TypeLoginFinish {
			return false
		}
		forward()
		tooMany(w)
		return true
	})
	tm := typing("right", "right", "right")
	r := u.atTerminal(tm, "restore", backup, "-C", t.TempDir())
	if r.code != 1 || h.count(protocol.TypeLoginStart) != 1 || h.count(protocol.TypeLoginFinish) != 1 {
		t.Fatalf("429 after KE3: exit %d, %d login starts, %d finishes\n%s", r.code, h.count(protocol.TypeLoginStart), h.count(protocol.TypeLoginFinish), r.stderr)
	}
	mustContain(t, "429 after KE3", r.stderr, "429")

	// 429 after relaying KE1: the host says nothing was counted, the
	// vault's signed count says otherwise.
	starts := h.count(protocol.TypeLoginStart)
	h.set(func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool {
		if typ != protocol.TypeLoginStart {
			return false
		}
		forward()
		tooMany(w)
		return true
	})
	tm = typing("right", "right")
	r = u.atTerminal(tm, "restore", backup, "-C", t.TempDir())
	if r.code != 1 || h.count(protocol.TypeLoginStart) != starts+1 {
		t.Fatalf("lying 429: exit %d, %d login starts\n%s", r.code, h.count(protocol.TypeLoginStart)-starts, r.stderr)
	}
	mustContain(t, "lying 429", r.stderr, "the answer said nothing was counted, but the vault's signed count shows", "not sent again")

	// An honest 429 (not relayed): sent again after Retry-After, once.
	starts = h.count(protocol.TypeLoginStart)
	refusedOnce := false
	h.set(func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool {
		if typ != protocol.TypeLoginStart || refusedOnce {
			return false
		}
		refusedOnce = true
		tooMany(w)
		return true
	})
	dst := filepath.Join(t.TempDir(), "out")
	tm = typing("right")
	r = u.atTerminal(tm, "restore", backup, "-C", dst)
	if r.code != 0 || h.count(protocol.TypeLoginStart) != starts+1 {
		t.Fatalf("honest 429: exit %d, %d login starts\n%s", r.code, h.count(protocol.TypeLoginStart)-starts, r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))
	mustContain(t, "honest 429", r.stderr, "the same password is sent again in 1s")

	// A tampered KE2: the right password looks wrong. Typed again, it is
	// not sent again.
	starts = h.count(protocol.TypeLoginStart)
	h.set(func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool {
		if typ != protocol.TypeLoginStart {
			return false
		}
		status, hdr, b := forward()
		var reply protocol.LoginStartReply
		if protocol.Decode(b, typ, &reply) == nil {
			reply.KE2[100] ^= 1
			b, _ = protocol.Encode(typ, &reply)
		}
		passThrough(w, status, hdr, b)
		return true
	})
	tm = typing("right", "right", "")
	r = u.atTerminal(tm, "restore", backup, "-C", t.TempDir())
	if r.code != 1 || h.count(protocol.TypeLoginStart) != starts+1 {
		t.Fatalf("tampered KE2: exit %d, %d login starts\n%s", r.code, h.count(protocol.TypeLoginStart)-starts, r.stderr)
	}
	mustContain(t, "tampered KE2", r.stderr, "already tried in this run and refused; it was not sent again", "no password given")

	// A forged count (another key) claiming one try left: not shown as the
	// vault's, neither by status nor in the prompt; the user is told the
	// count could not be checked and asked to confirm.
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	h.set(func(w http.ResponseWriter, typ protocol.Type, body []byte, forward func() (int, http.Header, []byte)) bool {
		if typ != protocol.TypeUserStatus {
			return false
		}
		var req protocol.UserStatusRequest
		if protocol.Decode(body, typ, &req) != nil {
			return false
		}
		fake, _ := protocol.SignUserStatus(forger, &protocol.UserStatus{Version: 1, UserID: req.UserID, Nonce: req.Nonce,
			Generation: 1 << 63, Limit: 5, TriesLeft: 1, FailedSinceSuccess: 4})
		b, _ := protocol.Encode(typ, &fake)
		w.Header().Set("Content-Type", "application/cbor")
		w.Write(b)
		return true
	})
	r = u.run("status")
	if r.code != 1 || strings.Contains(r.stdout, "tries left now") || strings.Contains(r.stdout, "1 of 5") {
		t.Fatalf("a forged count: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	mustContain(t, "status with a forged count", r.stderr, "signed count of tries does not check out")
	starts = h.count(protocol.TypeLoginStart)
	tm = typing("right", "no")
	r = u.atTerminal(tm, "restore", backup, "-C", t.TempDir())
	if r.code != 1 || h.count(protocol.TypeLoginStart) != starts || strings.Contains(tm.transcript(), "1 of 5") ||
		strings.Contains(r.stderr, "This is your last try") {
		t.Fatalf("a forged count in the loop: exit %d, %d sent\nprompts:\n%s\n%s", r.code, h.count(protocol.TypeLoginStart)-starts, tm.transcript(), r.stderr)
	}
	mustContain(t, "a forged count in the loop", r.stderr, "could not be checked", "This may be your last try")
}

// A realm set on a terminal: a wrong password is asked again with the
// tries left across the realms, a refused one is not sent again.
func TestE2ERealmPasswordAskedAgain(t *testing.T) {
	rs := newRealms(t, 3)
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "correct horse"
	u.ok("init", "--realms", writeRealmsFile(t, rs), "--insecure")
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "docs.age")
	u.ok("backup", src, "-o", backup)
	delete(u.env, "COFFER_PASSWORD")

	dst := filepath.Join(t.TempDir(), "out")
	tm := typing("wrong horse", "wrong horse", "correct horse")
	r := u.atTerminal(tm, "restore", backup, "-C", dst)
	t.Logf("prompts:\n%s\nstderr:\n%s", tm.transcript(), r.stderr)
	if r.code != 0 {
		t.Fatalf("realm restore at a terminal: exit %d\n%s", r.code, r.stderr)
	}
	sameTree(t, src, filepath.Join(dst, "documents"))
	mustContain(t, "realm restore", tm.transcript()+r.stderr, "tries left across the realms): ", "wrong password;",
		"already tried in this run and refused; it was not sent again")
}
