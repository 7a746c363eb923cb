package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/internal/tlogtest"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// fixture is a real log (tessera POSIX, witnessed) served by cofferd's
// handler, a policy file, a state file, and a fake rebuild command whose
// answers the test sets per commit.
type fixture struct {
	t        *testing.T
	log      *tlogtest.Log
	url      string
	dir      string
	policy   string
	state    string
	sumsDir  string // COMMIT -> the SHA256SUMS the fake rebuild writes
	calls    string // the fake rebuild appends each COMMIT BOARD here
	rebuild  string
	provPub  ed25519.PublicKey
	provPriv ed25519.PrivateKey

	mu         sync.Mutex
	checkpoint []byte // non-nil: served instead of the log's
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), log: tlogtest.New(t, "releases.coffer.test", 2)}
	rl, err := host.OpenReleaseLog(f.log.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		cp := f.checkpoint
		f.mu.Unlock()
		if cp != nil && r.URL.Path == "/v1/log/checkpoint" {
			w.Write(cp)
			return
		}
		rl.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/v1/log/"
	f.policy = filepath.Join(f.dir, "policy")
	if err := os.WriteFile(f.policy, []byte(f.log.Policy.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f.state = filepath.Join(f.dir, "state.json")
	f.sumsDir = filepath.Join(f.dir, "sums")
	f.calls = filepath.Join(f.dir, "calls")
	os.Mkdir(f.sumsDir, 0o755)
	f.rebuild = filepath.Join(f.dir, "fake-rebuild.sh")
	// COMMIT.unknown in sumsDir: the commit does not resolve (exit 10).
	script := fmt.Sprintf("#!/bin/sh\nset -eu\necho \"$1 $2\" >> %s\n[ ! -e %s/\"$1\".unknown ] || exit 10\ncp %s/\"$1\" \"$3/SHA256SUMS\"\n", f.calls, f.sumsDir, f.sumsDir)
	if err := os.WriteFile(f.rebuild, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if f.provPub, f.provPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	return f
}

// release logs a release of commit whose rebuild reports rebuiltFirmware
// (the logged firmware hash is sum(commit+"os")).
func (f *fixture) release(version uint64, commit, rebuiltFirmware string) *releaselog.Entry {
	e := &releaselog.Entry{Kind: releaselog.KindRelease, Release: &releaselog.Release{
		Version: version, Name: fmt.Sprintf("v%d", version), Commit: commit, Toolchain: "tamago-go1.26.0", Board: "qemu",
		Firmware: sum(commit + "os"), Applet: sum(commit + "applet"),
	}}
	sums := fmt.Sprintf("%x  applet.elf\n%x  coffer-os.elf\n", sum(commit+"applet"), sum(rebuiltFirmware))
	if err := os.WriteFile(filepath.Join(f.sumsDir, commit), []byte(sums), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return e
}

// identity is a logged vault identity, signed by key.
func (f *fixture) identity(name string, firmware []byte, key ed25519.PrivateKey) *releaselog.Entry {
	id := &protocol.Identity{Version: protocol.Version, SigningKey: sum(name + "sig"), AKEKey: sum(name + "ake"), HPKEKey: sum(name + "hpke"),
		FirmwareHash: firmware, MaxLimit: protocol.MinLimit, Name: name}
	si, err := protocol.SignIdentity(key, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return &releaselog.Entry{Kind: releaselog.KindIdentity, Identity: &si}
}

func (f *fixture) run(args ...string) (int, string) {
	f.t.Helper()
	var out, errs bytes.Buffer
	base := []string{"-policy", f.policy, "-log", f.url, "-state", f.state, "-provisioning-key", hex.EncodeToString(f.provPub)}
	var full []string
	if len(args) > 0 && args[0] == "vaults" {
		full = append(append([]string{"vaults"}, base...), args[1:]...)
	} else {
		full = append(append(base, "-rebuild", f.rebuild, "-once"), args...)
	}
	code := run(context.Background(), full, &out, &errs)
	return code, out.String() + errs.String()
}

func (f *fixture) rebuildCalls() []string {
	b, _ := os.ReadFile(f.calls)
	return strings.Fields(string(b))
}

// TestMonitorRebuildsEachReleaseOnceAndFlagsAMismatch: a release whose
// rebuild matches passes; one whose rebuilt firmware differs from the
// logged hash is reported MISMATCH with a non-zero exit, after the whole
// pass and with the state saved; each entry is processed once across
// runs.
func TestMonitorRebuildsEachReleaseOnceAndFlagsAMismatch(t *testing.T) {
	f := newFixture(t)
	good := strings.Repeat("a", 40)
	bad := strings.Repeat("b", 40)
	f.log.AddEntries(f.release(1, good, good+"os"))
	code, out := f.run()
	if code != exitOK || !strings.Contains(out, "#0 release v1") || !strings.Contains(out, "every image matches") || strings.Contains(out, "MISMATCH") {
		t.Fatalf("a matching release: exit %d\n%s", code, out)
	}
	// Nothing new: nothing printed again, nothing rebuilt again.
	code, out = f.run()
	if code != exitOK || strings.Contains(out, "#0") || len(f.rebuildCalls()) != 2 {
		t.Fatalf("a second run: exit %d, rebuilds %v\n%s", code, f.rebuildCalls(), out)
	}
	// A release whose source does not build to what was logged, then a
	// matching one after it in the same pass.
	f.log.AddEntries(f.release(2, bad, "something else"), f.release(3, strings.Repeat("c", 40), strings.Repeat("c", 40)+"os"))
	code, out = f.run()
	if code != exitFinding || !strings.Contains(out, "MISMATCH #1 release v2") || !strings.Contains(out, fmt.Sprintf("logged %x, rebuilt %x", sum(bad+"os"), sum("something else"))) ||
		!strings.Contains(out, "#2 release v3: rebuilt, every image matches") || strings.Contains(out, "#0 release") {
		t.Fatalf("a mismatching release: exit %d\n%s", code, out)
	}
	st, err := loadState(f.state)
	if err != nil || st.View.Size != 3 || len(st.Pending) != 0 || st.Results[1].Match || !st.Results[2].Match {
		t.Fatalf("state after the mismatch: %v %+v", err, st)
	}
	if calls := f.rebuildCalls(); len(calls) != 6 || calls[2] != bad || calls[4] != strings.Repeat("c", 40) {
		t.Fatalf("rebuilds: %v", calls)
	}
	// The finding was reported; the next run has nothing new.
	if code, out = f.run(); code != exitOK || strings.Contains(out, "MISMATCH") {
		t.Fatalf("after the mismatch: exit %d\n%s", code, out)
	}
}

// TestMonitorRetriesARebuildThatCouldNotRun: a rebuild that fails leaves
// the release pending (exit 3), and the next run rebuilds it.
func TestMonitorRetriesARebuildThatCouldNotRun(t *testing.T) {
	f := newFixture(t)
	commit := strings.Repeat("d", 40)
	e := f.release(1, commit, commit+"os")
	sums := filepath.Join(f.sumsDir, commit)
	os.Rename(sums, sums+".later")
	f.log.AddEntries(e)
	if code, out := f.run(); code != exitNotRebuilt || !strings.Contains(out, "NOT REBUILT") {
		t.Fatalf("a failed rebuild: exit %d\n%s", code, out)
	}
	os.Rename(sums+".later", sums)
	if code, out := f.run(); code != exitOK || !strings.Contains(out, "#0 release v1: rebuilt, every image matches") {
		t.Fatalf("the retry: exit %d\n%s", code, out)
	}
}

// TestMonitorListsEveryVaultAndFlagsABadSignature: every logged identity
// is listed with whether the provisioning key signed it and whether it is
// revoked; one signed by another key is flagged, in follow and in vaults.
func TestMonitorListsEveryVaultAndFlagsABadSignature(t *testing.T) {
	f := newFixture(t)
	commit := strings.Repeat("e", 40)
	rel := f.release(1, commit, commit+"os")
	_, rogueKey, _ := ed25519.GenerateKey(rand.Reader)
	honest := f.identity("vault-honest", rel.Release.Firmware, f.provPriv)
	rogue := f.identity("vault-rogue", rel.Release.Firmware, rogueKey)
	f.log.AddEntries(rel, honest, rogue)
	code, out := f.run()
	if code != exitFinding || !strings.Contains(out, `#1 identity "vault-honest"`) || !strings.Contains(out, `#2 identity "vault-rogue"`) {
		t.Fatalf("follow: exit %d\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "vault-rogue") != strings.Contains(line, "NOT SIGNED BY THE PROVISIONING KEY") {
			t.Errorf("follow line: %s", line)
		}
	}
	f.log.AddEntries(&releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{
		Target: releaselog.KindIdentity, Hash: releaselog.BundleHash(honest.Identity), Reason: "key compromised"}})
	code, out = f.run("vaults")
	if code != exitFinding || !strings.Contains(out, "2 vault identities logged") {
		t.Fatalf("vaults: exit %d\n%s", code, out)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		for _, n := range []string{"vault-honest", "vault-rogue"} {
			if strings.Contains(line, `"`+n+`"`) {
				rows[n] = line
			}
		}
	}
	h, r := rows["vault-honest"], rows["vault-rogue"]
	if !strings.HasPrefix(h, "1\t") || !strings.Contains(h, "\tvalid\t") || !strings.Contains(h, "REVOKED (#3: key compromised)") ||
		!strings.Contains(h, hex.EncodeToString(sum("vault-honest"+"sig"))) || !strings.Contains(h, "release v1 (#0)") {
		t.Errorf("honest row: %q", h)
	}
	if !strings.HasPrefix(r, "2\t") || !strings.Contains(r, "NOT SIGNED BY THE PROVISIONING KEY") || !strings.HasSuffix(r, "\tno") {
		t.Errorf("rogue row: %q", r)
	}
	if !strings.Contains(out, "#3 REVOCATION of identity bundle") {
		t.Errorf("no revocation listed:\n%s", out)
	}
}

// TestMonitorReportsARollbackAndKeepsItsState: a log host that serves an
// older checkpoint than the monitor verified is reported as a fork or
// rollback, and the state file is left exactly as it was.
func TestMonitorReportsARollbackAndKeepsItsState(t *testing.T) {
	f := newFixture(t)
	commit := strings.Repeat("f", 40)
	f.log.AddEntries(f.release(1, commit, commit+"os"))
	if code, out := f.run(); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	old, err := os.ReadFile(filepath.Join(f.log.Dir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	f.log.AddEntries(f.release(2, strings.Repeat("0", 40), strings.Repeat("0", 40)+"os"))
	if code, out := f.run(); code != exitOK {
		t.Fatalf("second run: %d\n%s", code, out)
	}
	before, _ := os.ReadFile(f.state)
	f.mu.Lock()
	f.checkpoint = old
	f.mu.Unlock()
	code, out := f.run()
	after, _ := os.ReadFile(f.state)
	if code != exitFork || !strings.Contains(out, "FORK OR ROLLBACK") || !bytes.Equal(before, after) {
		t.Fatalf("a rollback: exit %d, state kept %v\n%s", code, bytes.Equal(before, after), out)
	}
	if code, _ := f.run("vaults"); code != exitFork {
		t.Fatalf("vaults on a rolled-back log: exit %d", code)
	}
}

func TestParseSums(t *testing.T) {
	good := fmt.Sprintf("%x  applet.elf\n%x *coffer-os.elf\n\n", sum("a"), sum("b"))
	s, err := parseSums([]byte(good))
	if err != nil || !bytes.Equal(s["applet.elf"], sum("a")) || !bytes.Equal(s["coffer-os.elf"], sum("b")) || len(s) != 2 {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"xyz  applet.elf\n", fmt.Sprintf("%x\n", sum("a")), fmt.Sprintf("%x  a\n%x  a\n", sum("a"), sum("b")), fmt.Sprintf("%x  \n", sum("a"))} {
		if _, err := parseSums([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func FuzzParseSums(f *testing.F) {
	f.Add([]byte(fmt.Sprintf("%x  applet.elf\n%x *coffer-os.elf\n", sum("a"), sum("b"))))
	f.Add([]byte("x  y\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSums(b)
		if err != nil {
			return
		}
		for name, h := range s {
			if name == "" || len(h) != 32 {
				t.Fatalf("%q: %x", name, h)
			}
		}
	})
}

// TestMonitorFlagsAMismatchEvenWithoutTheBootImage: a release that logs a
// boot image, rebuilt without one (no BOOT_POLICY), whose rebuilt OS
// differs from the logged hash. The missing boot image must not hide the
// OS mismatch behind "not rebuilt": MISMATCH, exit 1, final.
func TestMonitorFlagsAMismatchEvenWithoutTheBootImage(t *testing.T) {
	f := newFixture(t)
	commit := strings.Repeat("1", 40)
	e := f.release(1, commit, "a backdoored OS")
	e.Release.Board, e.Release.BootImage = "usbarmory", sum(commit+"boot")
	f.log.AddEntries(e)
	code, out := f.run()
	if code != exitFinding || !strings.Contains(out, "MISMATCH #0 release v1") ||
		!strings.Contains(out, fmt.Sprintf("firmware (coffer-os.elf) logged %x, rebuilt %x", sum(commit+"os"), sum("a backdoored OS"))) {
		t.Fatalf("an OS mismatch with no boot image rebuilt: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "applet (applet.elf) logged") {
		t.Errorf("the matching applet reported as a mismatch:\n%s", out)
	}
	st, err := loadState(f.state)
	if err != nil || len(st.Pending) != 0 || st.Results[0].Match {
		t.Fatalf("state: %v %+v", err, st)
	}
	// Every image that was rebuilt matches, the boot image is missing:
	// not a verdict yet, retried.
	good := strings.Repeat("2", 40)
	e = f.release(2, good, good+"os")
	e.Release.Board, e.Release.BootImage = "usbarmory", sum(good+"boot")
	f.log.AddEntries(e)
	code, out = f.run()
	if code != exitNotRebuilt || !strings.Contains(out, "#1 release v2: NOT REBUILT") || !strings.Contains(out, "boot image") || strings.Contains(out, "MISMATCH") {
		t.Fatalf("a matching OS with no boot image rebuilt: exit %d\n%s", code, out)
	}
}

// TestMonitorFlagsACommitThatDoesNotResolve: a release whose commit the
// rebuild cannot find (the rebuild command's exit status 10), or that is
// not a full hex commit id, cannot be checked by anyone: a finding, not a
// release silently pending for ever. An unresolved commit is retried (and
// flagged) every run until it resolves.
func TestMonitorFlagsACommitThatDoesNotResolve(t *testing.T) {
	f := newFixture(t)
	secret := strings.Repeat("3", 40)
	e := f.release(1, secret, secret+"os")
	unknown := filepath.Join(f.sumsDir, secret+".unknown")
	if err := os.WriteFile(unknown, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	short := f.release(2, "abc123", "abc123os")
	f.log.AddEntries(e, short)
	code, out := f.run()
	if code != exitFinding || !strings.Contains(out, "FLAGGED #0 release v1: UNRESOLVED COMMIT "+secret) ||
		!strings.Contains(out, `FLAGGED #1 release v2: NOT A COMMIT ID "abc123"`) {
		t.Fatalf("unresolvable commits: exit %d\n%s", code, out)
	}
	if calls := f.rebuildCalls(); len(calls) != 2 || calls[0] != secret {
		t.Fatalf("rebuilds: %v (a malformed commit is never given to the rebuild)", calls)
	}
	// Still unresolved: flagged again.
	if code, out = f.run(); code != exitFinding || !strings.Contains(out, "UNRESOLVED COMMIT "+secret) || strings.Contains(out, "abc123") {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	// The commit is published: rebuilt and compared.
	os.Remove(unknown)
	if code, out = f.run(); code != exitOK || !strings.Contains(out, "#0 release v1: rebuilt, every image matches") {
		t.Fatalf("after the commit resolves: exit %d\n%s", code, out)
	}
}

// TestMonitorFlagsAVersionThatDoesNotIncrease: the bootloader's
// anti-rollback trusts Version to grow per board; a release logged with a
// version not above an earlier release's for the same board is flagged
// (by follow and by vaults, whichever sees it first), another board's
// numbering is its own.
func TestMonitorFlagsAVersionThatDoesNotIncrease(t *testing.T) {
	f := newFixture(t)
	c := func(b string) string { return strings.Repeat(b, 40) }
	sw := f.release(1, c("7"), c("7")+"os")
	sw.Release.Board = "usbarmory"
	f.log.AddEntries(f.release(5, c("4"), c("4")+"os"), f.release(6, c("5"), c("5")+"os"), sw)
	if code, out := f.run(); code != exitOK || strings.Contains(out, "FLAGGED") {
		t.Fatalf("increasing versions: exit %d\n%s", code, out)
	}
	f.log.AddEntries(f.release(6, c("6"), c("6")+"os"))
	code, out := f.run()
	if code != exitFinding || !strings.Contains(out, "FLAGGED #3 release v6: VERSION 6 for board qemu does not increase over #1 release v6 (version 6)") {
		t.Fatalf("a repeated version: exit %d\n%s", code, out)
	}
	f.log.AddEntries(f.release(4, c("8"), c("8")+"os"))
	code, out = f.run("vaults")
	if code != exitFinding || !strings.Contains(out, "FLAGGED #4 release v4: VERSION 4 for board qemu does not increase over #1 release v6 (version 6)") {
		t.Fatalf("a lower version, seen by vaults: exit %d\n%s", code, out)
	}
}

// TestRebuildScriptSaysACommitDoesNotResolve: the default rebuild command
// exits 10 (which the monitor flags) for a commit its repository does not
// hold, and the monitor run with it flags the release.
func TestRebuildScriptSaysACommitDoesNotResolve(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("SKIPPED: git not found")
	}
	script, err := filepath.Abs("../../../scripts/rebuild-release.sh")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	for _, args := range [][]string{{"init", "--quiet"}, {"-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "--quiet", "--allow-empty", "-m", "x"}} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	t.Setenv("COFFER_REPO", repo)
	missing := strings.Repeat("9", 40)
	c := exec.Command(script, missing, "qemu", t.TempDir())
	out, err := c.CombinedOutput()
	if c.ProcessState == nil || c.ProcessState.ExitCode() != exitCommitUnknown || !strings.Contains(string(out), "does not resolve") {
		t.Fatalf("rebuild-release.sh of a commit the repository lacks: %v\n%s", err, out)
	}
	f := newFixture(t)
	f.rebuild = script
	f.log.AddEntries(f.release(1, missing, missing+"os"))
	if code, out := f.run(); code != exitFinding || !strings.Contains(out, "UNRESOLVED COMMIT "+missing) {
		t.Fatalf("the monitor with rebuild-release.sh: exit %d\n%s", code, out)
	}
}

// TestMonitorFlagsRevokedKeysUnderAnotherBundle: an identity revocation
// withdraws the vault's keys, not one bundle. The same keys logged again in
// another bundle (here a newer firmware, as an upgrade would) are listed as
// revoked too, naming the revocation and the revoked bundle's index.
func TestMonitorFlagsRevokedKeysUnderAnotherBundle(t *testing.T) {
	f := newFixture(t)
	c1, c2 := strings.Repeat("a", 40), strings.Repeat("b", 40)
	rel1 := f.release(1, c1, c1+"os")
	rel2 := f.release(2, c2, c2+"os")
	first := f.identity("vault-lost", rel1.Release.Firmware, f.provPriv)
	f.log.AddEntries(rel1, first, &releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{
		Target: releaselog.KindIdentity, Hash: releaselog.BundleHash(first.Identity), Reason: "device lost"}})
	again := f.identity("vault-lost", rel2.Release.Firmware, f.provPriv) // same keys, another bundle
	f.log.AddEntries(rel2, again)
	// follow flags it as it is logged, with a non-zero exit.
	if code, out := f.run(); code != exitFinding || !strings.Contains(out, "#4 REVOKED KEYS LOGGED AGAIN") {
		t.Errorf("follow: exit %d\n%s", code, out)
	}
	code, out := f.run("vaults")
	if code != exitFinding {
		t.Fatalf("vaults: exit %d\n%s", code, out)
	}
	var rows []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"vault-lost"`) {
			rows = append(rows, line)
		}
	}
	if len(rows) != 2 {
		t.Fatalf("want 2 rows for the vault, got %d:\n%s", len(rows), out)
	}
	if !strings.Contains(rows[0], "REVOKED (#2: device lost)") {
		t.Errorf("the revoked bundle's row: %q", rows[0])
	}
	if !strings.Contains(rows[1], "REVOKED KEYS LOGGED AGAIN (keys of #1, revoked by #2: device lost)") {
		t.Errorf("the same keys under another bundle are not flagged: %q", rows[1])
	}
}
