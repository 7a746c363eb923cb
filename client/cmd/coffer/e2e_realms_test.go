package main

// End to end with a realm set (protocol/REALMS.md 17): three realms, each
// its own softvault process behind its own cofferd process with its own
// accounts file and development provisioning key (three operators), and the
// real coffer binary driven as a user drives it.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// e2eRealm is one realm: its vault and its cofferd.
type e2eRealm struct {
	name, operator string
	vault          *softVault
	daemon         *daemon
	provKey        string
	token          string
	// server is the address the user is given for the realm when it is not
	// its cofferd's own: a hop the test puts in between.
	server string
}

// url is the realm's address as the user's realms file gives it.
func (r *e2eRealm) url() string {
	if r.server != "" {
		return r.server
	}
	return r.daemon.url()
}

// newRealms starts n realms, each with one account "alice".
func newRealms(t *testing.T, n int) []*e2eRealm {
	t.Helper()
	var rs []*e2eRealm
	for i := 1; i <= n; i++ {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("realm-%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		v, key := newDevVault(t, dir)
		accounts := filepath.Join(dir, "accounts.json")
		tokens := newAccounts(t, accounts, "alice")
		d := startCofferd(t, accounts, v.sock)
		rs = append(rs, &e2eRealm{name: fmt.Sprintf("realm-%d", i), operator: fmt.Sprintf("operator %d", i),
			vault: v, daemon: d, provKey: key, token: tokens["alice"]})
	}
	return rs
}

// writeRealmsFile writes the file a user gives to coffer init --realms.
func writeRealmsFile(t *testing.T, rs []*e2eRealm) string {
	t.Helper()
	var list []realmsFileEntry
	for _, r := range rs {
		list = append(list, realmsFileEntry{Name: r.name, Server: r.url(), Token: r.token, ProvisioningKey: r.provKey, Operator: r.operator})
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "realms.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// realmsUser initialises a user on the three realms and makes one backup.
func realmsUser(t *testing.T, rs []*e2eRealm) (*user, string, string) {
	t.Helper()
	u := newUser(t)
	u.env["COFFER_PASSWORD"] = "correct horse battery staple"
	file := writeRealmsFile(t, rs)

	// A realm whose bundle is not signed by the provisioning key the user
	// gave for it (here realm-1's and realm-2's swapped: an operator
	// standing in for another) is refused by name, and nothing is
	// registered anywhere.
	swapped := append([]*e2eRealm{}, rs...)
	r1, r2 := *rs[0], *rs[1]
	r1.provKey, r2.provKey = rs[1].provKey, rs[0].provKey
	swapped[0], swapped[1] = &r1, &r2
	r := u.fails([]string{"realm realm-1", "nothing was registered"}, "init", "--realms", writeRealmsFile(t, swapped), "--insecure")
	t.Logf("init with swapped provisioning keys:\n%s", r.stderr)
	notExist(t, u.config)

	// Without --insecure, software realms are refused before anything is
	// registered.
	r = u.fails([]string{"INSECURE", "refused without --insecure"}, "init", "--realms", file)
	notExist(t, u.config)

	r = u.ok("init", "--realms", file, "--insecure")
	t.Logf("init --realms:\n%s%s", r.stderr, r.stdout)
	for _, want := range []string{
		"registered at 3 of 3 realms; your key survives the loss of 1 realm",
		"Set code (keep it with your password",
		// 12.4: three insecure realms reach the threshold of 2.
		"no guess bound: the servers' operators can test passwords offline",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("init --realms stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, rr := range rs {
		want := fmt.Sprintf("realm %s: operator %q, provisioning key %s", rr.name, rr.operator, provisioningFingerprint(rr.provKey))
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("init --realms stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for _, want := range []string{"are served from the same host", "all run the same firmware", "are INSECURE"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("init --realms stderr lacks the warning %q:\n%s", want, r.stderr)
		}
	}
	src := sourceTree(t)
	backup := filepath.Join(t.TempDir(), "docs.age")
	u.ok("backup", src, "-o", backup)
	return u, src, backup
}

var reTriesLeftAcross = regexp.MustCompile(`wrong password; (\d+) tries? left across the realms \(realm-1 (\d+), realm-2 (\d+), realm-3 (\d+)\)`)

// TestE2ERealms: init, backup and restore with three realms; a wrong
// password counts down; one realm down still restores and is named; two
// down is a clear quorum error; `coffer realms` shows the set.
func TestE2ERealms(t *testing.T) {
	rs := newRealms(t, 3)
	u, src, backup := realmsUser(t, rs)

	out := filepath.Join(t.TempDir(), "out")
	r := u.ok("restore", backup, "-C", out)
	sameTree(t, src, filepath.Join(out, "documents"))
	t.Logf("restore:\n%s", r.stderr)
	if !strings.Contains(r.stderr, "tries left across the realms") || !strings.Contains(r.stderr, "realm realm-1:") {
		t.Fatalf("restore did not report the realms:\n%s", r.stderr)
	}

	// A wrong password is a check mismatch at t verified evaluations: it
	// is named as such, with the tries left, and they go down.
	good := u.env["COFFER_PASSWORD"]
	u.env["COFFER_PASSWORD"] = "wrong horse"
	first := reTriesLeftAcross.FindStringSubmatch(u.fails([]string{"wrong password;"}, "key", "export-age", "--insecure").stderr)
	second := reTriesLeftAcross.FindStringSubmatch(u.fails([]string{"wrong password;"}, "key", "export-age", "--insecure").stderr)
	t.Logf("wrong passwords: %q, %q", first, second)
	if first == nil || second == nil {
		t.Fatalf("wrong password messages do not give the tries left: %v %v", first, second)
	}
	if a, b := atoi(t, first[1]), atoi(t, second[1]); b >= a {
		t.Fatalf("tries left across the realms went from %d to %d after a wrong password", a, b)
	}
	if sum(t, second[2:]) != sum(t, first[2:])-2 {
		t.Fatalf("a wrong password counted at %v then %v: want exactly t = 2 realms counting it", first[2:], second[2:])
	}
	u.env["COFFER_PASSWORD"] = good

	// `coffer realms` lists the three, live, holding the committed version,
	// with the failures just made.
	r = u.ok("realms", "--insecure")
	t.Logf("realms:\n%s", r.stdout)
	for _, want := range []string{"realm set:        2 of 3", "insecure:         test set", "recoverable:      yes; the key survives the loss of 1 realm",
		"set code:", "state:          live", "committed, index 1"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("coffer realms lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, rr := range rs {
		if !strings.Contains(r.stdout, fmt.Sprintf("realm %s\n  reachable:      yes", rr.name)) {
			t.Fatalf("coffer realms does not show %s reachable:\n%s", rr.name, r.stdout)
		}
	}
	if c := strings.Count(r.stdout, "state:          live"); c != 3 {
		t.Fatalf("coffer realms shows %d live realms, want 3:\n%s", c, r.stdout)
	}

	// A new device: without the set code it cannot tell the user's
	// versions from the operators' and refuses; with it, it recovers K and
	// restores.
	code := regexp.MustCompile(`(?m)^set code:\s+(\S+)$`).FindStringSubmatch(r.stdout)
	if code == nil {
		t.Fatalf("coffer realms shows no set code:\n%s", r.stdout)
	}
	u2 := newUser(t)
	u2.env["COFFER_PASSWORD"] = good
	file := writeRealmsFile(t, rs)
	if r := u2.run("init", "--realms", file, "--existing", "--insecure"); r.code != 2 || !strings.Contains(r.stderr, "needs --set-code") {
		t.Fatalf("a new device without the set code: exit %d\n%s", r.code, r.stderr)
	}
	wrong := []byte(code[1])
	wrong[0] ^= 1
	u2.fails([]string{"a version your key did not make", "never evaluated"}, "init", "--realms", file, "--existing", "--insecure", "--set-code", string(wrong))
	notExist(t, u2.config)
	r = u2.ok("init", "--realms", file, "--existing", "--insecure", "--set-code", code[1])
	t.Logf("new device:\n%s%s", r.stderr, r.stdout)
	out4 := filepath.Join(t.TempDir(), "out4")
	u2.ok("restore", backup, "-C", out4)
	sameTree(t, src, filepath.Join(out4, "documents"))

	// A new device without the set code but with one of the user's
	// backups (REALMS.md 5.6): the recovered key must open it. A backup of
	// another account's key is refused and nothing is written; the user's
	// own backup is accepted and the anchor pinned.
	u3 := newUser(t)
	u3.env["COFFER_PASSWORD"] = good
	foreign := newUser(t)
	foreign.ok("init")
	foreignBackup := filepath.Join(t.TempDir(), "foreign.age")
	foreign.ok("backup", src, "-o", foreignBackup)
	u3.fails([]string{"does not open the backup given to check it"}, "init", "--realms", file, "--existing", "--insecure", "--backup", foreignBackup)
	notExist(t, u3.config)
	r = u3.ok("init", "--realms", file, "--existing", "--insecure", "--backup", backup)
	if !strings.Contains(r.stdout, "set code "+code[1]) {
		t.Fatalf("new device with a backup did not pin the set's anchor:\n%s", r.stdout)
	}
	u3.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "out5"))
	// A configuration without an anchor (here taken out by hand): restore
	// checks the recovered key against the file it restores.
	var cfg map[string]any
	b, err := os.ReadFile(u3.config)
	if err != nil || json.Unmarshal(b, &cfg) != nil {
		t.Fatalf("reading the new device's configuration: %v", err)
	}
	delete(cfg["realms"].(map[string]any), "anchor")
	if b, err = json.Marshal(cfg); err != nil || os.WriteFile(u3.config, b, 0o600) != nil {
		t.Fatal("writing the configuration without its anchor")
	}
	u3.fails([]string{"does not open the backup given to check it"}, "restore", foreignBackup, "-C", filepath.Join(t.TempDir(), "out6"), "--insecure")
	u3.ok("restore", backup, "-C", filepath.Join(t.TempDir(), "out7"), "--insecure")
	if b, _ := os.ReadFile(u3.config); !strings.Contains(string(b), `"anchor"`) {
		t.Fatal("restore with the backup as the check did not pin the anchor again")
	}

	// One realm's vault down: its cofferd answers, its vault does not;
	// the other two recover the key and the report names the missing one.
	rs[2].vault.proc.kill()
	rs[2].daemon.waitConnected(false, 10*time.Second)
	out2 := filepath.Join(t.TempDir(), "out2")
	r = u.ok("restore", backup, "-C", out2, "--insecure")
	sameTree(t, src, filepath.Join(out2, "documents"))
	t.Logf("restore with realm-3's vault down:\n%s", r.stderr)
	if !strings.Contains(r.stderr, "realm realm-3: ") || strings.Contains(r.stderr, "realm realm-3: 5 tries") {
		t.Fatalf("restore with realm-3 down does not name it as failed:\n%s", r.stderr)
	}
	r = u.ok("realms", "--insecure")
	if !strings.Contains(r.stdout, "realm realm-3\n  reachable:      NO") || !strings.Contains(r.stdout, "the key survives the loss of 0 realms") {
		t.Fatalf("coffer realms with realm-3 down:\n%s", r.stdout)
	}
	// A new device set up while realm-3 is down: it recovers from the two
	// that answer, restores, and shows the set's bounds (learnt from the
	// version, not the default limit's).
	u4 := newUser(t)
	u4.env["COFFER_PASSWORD"] = good
	u4.ok("init", "--realms", file, "--existing", "--insecure", "--set-code", code[1])
	out8 := filepath.Join(t.TempDir(), "out8")
	u4.ok("restore", backup, "-C", out8, "--insecure")
	sameTree(t, src, filepath.Join(out8, "documents"))
	var cfg4 struct {
		Realms struct {
			Limit    uint `json:"limit"`
			PerRealm uint `json:"per_realm"`
		} `json:"realms"`
	}
	if b, err := os.ReadFile(u4.config); err != nil || json.Unmarshal(b, &cfg4) != nil || cfg4.Realms.PerRealm != 5 || cfg4.Realms.Limit != 10 {
		t.Fatalf("new device with realm-3 down: limits %+v (%v)", cfg4.Realms, err)
	}

	// Two down: one answered of the two needed, each missing realm named.
	rs[1].daemon.proc.kill()
	r = u.fails([]string{"2 of 3 realms needed", "1 answered", "realm realm-2 did not answer", "realm realm-3 did not answer"},
		"restore", backup, "-C", filepath.Join(t.TempDir(), "out3"), "--insecure")
	t.Logf("restore with two realms down:\n%s", r.stderr)
	notExist(t, filepath.Join(t.TempDir(), "out3", "documents"))
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sum(t *testing.T, ss []string) int {
	n := 0
	for _, s := range ss {
		n += atoi(t, s)
	}
	return n
}
