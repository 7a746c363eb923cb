package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	reReleaseKey = regexp.MustCompile(`release key: (\S+)`)
	reWitnessKey = regexp.MustCompile(`witness key \(cosignature/v1\): (\S+)`)
	reWitnessing = regexp.MustCompile(`on http://(127\.0\.0\.1:[0-9]+)/add-checkpoint`)
)

// releaseLog is a real release log on disk, written by coffer-release,
// with two coffer-witness processes (quorum 2), as an operator runs them.
type releaseLog struct {
	t         *testing.T
	dir, key  string
	policy    string // the policy file clients pin
	witnesses []string
}

func newReleaseLog(t *testing.T, dir string) *releaseLog {
	t.Helper()
	origin := "e2e.coffer.test/releases"
	l := &releaseLog{t: t, dir: filepath.Join(dir, "log"), key: filepath.Join(dir, "release.key"), policy: filepath.Join(dir, "policy.txt")}
	logKey := reReleaseKey.FindStringSubmatch(runTool(t, e2eBin(t, "coffer-release"), "keygen", "-origin", origin, "-o", l.key))[1]
	for i := range 2 {
		wkey := filepath.Join(dir, fmt.Sprintf("witness%d.key", i))
		vkey := reWitnessKey.FindStringSubmatch(runTool(t, e2eBin(t, "coffer-witness"), "keygen", "-name", fmt.Sprintf("w%d.e2e.test", i), "-o", wkey))[1]
		w := startProc(t, "coffer-witness", e2eBin(t, "coffer-witness"), "serve", "-key", wkey, "-state", filepath.Join(dir, fmt.Sprintf("witness%d", i)),
			"-listen", "127.0.0.1:0", "-log", origin+"="+logKey)
		addr := w.waitFor(reWitnessing, 30*time.Second)[1]
		l.witnesses = append(l.witnesses, "-witness", vkey+"=http://"+addr)
	}
	pol := runTool(t, e2eBin(t, "coffer-release"), append(append([]string{"policy", "-key", l.key}, l.witnesses...), "-quorum", "2")...)
	if err := os.WriteFile(l.policy, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// add runs a coffer-release command that appends to the log.
func (l *releaseLog) add(cmd string, args ...string) string {
	l.t.Helper()
	all := append(append([]string{cmd, "-log", l.dir, "-key", l.key}, l.witnesses...), "-quorum", "2")
	return runTool(l.t, e2eBin(l.t, "coffer-release"), append(all, args...)...)
}

// TestE2EReleaseLog: the whole chain with real processes — coffer-release
// writing a tessera log that two coffer-witness servers cosign, cofferd
// serving it read-only, coffer checking every vault against it. A vault
// whose bundle the provisioning key validly signed is refused while its
// bundle is not logged; a checkpoint that lacks the witnesses'
// cosignatures is refused; a revoked vault is refused.
func TestE2EReleaseLog(t *testing.T) {
	dir := t.TempDir()
	provKey := filepath.Join(dir, "prov.key")
	provPub := newProvisioningKey(t, provKey)
	lg := newReleaseLog(t, dir)

	// The software vault's release: its firmware hash is its binary's.
	sv := e2eBin(t, "softvault")
	lg.add("add-release", "-version", "1", "-name", "e2e", "-commit", strings.Repeat("0", 40), "-toolchain", "go",
		"-board", "software", "-os", sv, "-applet", sv)

	logged := newSignedVault(t, filepath.Join(dir, "a"), provKey)
	unlogged := newSignedVault(t, filepath.Join(dir, "b"), provKey)
	lg.add("add-identity", "-bundle", filepath.Join(dir, "a", "bundle.cbor"), "-provisioning-key", provPub)
	for _, v := range []*softVault{logged, unlogged} {
		v.serve()
	}
	// One cofferd per vault, each with its own state folder, both
	// serving the same log.
	tokens := map[string]string{}
	var daemons []*daemon
	for i, name := range []string{"ada", "bob"} {
		acc := filepath.Join(dir, name, "accounts.json")
		os.MkdirAll(filepath.Dir(acc), 0o700)
		tokens[name] = newAccounts(t, acc, name)[name]
		daemons = append(daemons, startCofferd(t, acc, []*softVault{logged, unlogged}[i].sock, "-log", lg.dir))
	}
	dA, dB := daemons[0], daemons[1]

	// Ada's vault is logged: init checks it and pins the policy.
	ada := newUser(t)
	ada.env["COFFER_PASSWORD"] = "logged and witnessed"
	r := ada.initPassword(dA.url(), tokens["ada"], provPub, "--insecure", "--log-policy", lg.policy)
	if strings.Contains(r.stderr, "is not in the release log") {
		t.Fatalf("init called a logged vault unlogged:\n%s", r.stderr)
	}
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "backup.age")
	ada.ok("backup", src, "-o", backup)

	// Bob's vault: signed by the same provisioning key, never logged.
	// --insecure is the only way past, and says so; without it, refused,
	// naming the bundle that is missing.
	bob := newUser(t)
	bob.env["COFFER_PASSWORD"] = "signed but unlogged"
	r = bob.initPassword(dB.url(), tokens["bob"], provPub, "--insecure", "--log-policy", lg.policy)
	if !strings.Contains(r.stderr, "is not in the release log") || !strings.Contains(r.stderr, "--insecure") {
		t.Fatalf("init past an unlogged vault did not say so:\n%s", r.stderr)
	}
	bundle := loadConfigE2E(t, bob.config).BundleHash
	r = bob.fails([]string{"not in the release log", bundle}, "status")
	t.Logf("unlogged: %s", strings.TrimSpace(r.stderr))
	// Logged (by the log operator, in public), it is accepted.
	lg.add("add-identity", "-bundle", filepath.Join(dir, "b", "bundle.cbor"), "-provisioning-key", provPub)
	bob.ok("status")

	// The checkpoint cofferd serves, stripped of its cosignatures: signed
	// by the release key alone, it is refused, and the view stays.
	cpPath := filepath.Join(lg.dir, "checkpoint")
	cp, err := os.ReadFile(cpPath)
	if err != nil {
		t.Fatal(err)
	}
	text, sigs, _ := strings.Cut(string(cp), "\n\n")
	var own []string
	for _, line := range strings.Split(strings.TrimSuffix(sigs, "\n"), "\n") {
		if strings.HasPrefix(line, "— e2e.coffer.test/releases ") {
			own = append(own, line)
		}
	}
	if len(own) != 1 || strings.Count(sigs, "\n") < 3 {
		t.Fatalf("the log's checkpoint is not signed by the log and two witnesses:\n%s", cp)
	}
	if err := os.WriteFile(cpPath, []byte(text+"\n\n"+own[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	view := loadConfigE2E(t, ada.config).Log.View
	dst := filepath.Join(t.TempDir(), "restored")
	r = ada.fails([]string{"lacks the witness cosignatures"}, "restore", backup, "-C", dst)
	t.Logf("unwitnessed: %s", strings.TrimSpace(r.stderr))
	ada.fails([]string{"lacks the witness cosignatures"}, "restore", "--insecure", backup, "-C", dst)
	notExist(t, dst)
	if got := loadConfigE2E(t, ada.config).Log.View; got.Size != view.Size {
		t.Fatalf("an unwitnessed checkpoint moved the view from %d to %d", view.Size, got.Size)
	}
	if err := os.WriteFile(cpPath, cp, 0o644); err != nil {
		t.Fatal(err)
	}
	ada.ok("restore", backup, "-C", dst)
	sameTree(t, src, filepath.Join(dst, "documents"))

	// The operator revokes Ada's vault: refused, naming the revocation.
	lg.add("revoke", "-identity", loadConfigE2E(t, ada.config).BundleHash, "-reason", "device lost")
	ada.fails([]string{"revoked", "device lost"}, "status")
	ada.fails([]string{"revoked"}, "status", "--insecure")
}
