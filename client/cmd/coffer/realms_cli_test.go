package main

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
)

const testProvKey = "6af80aea6e7bcbe5ab95fcc42b1f28263593cdeb5f1ff08573c5ffb49b03f7bf"

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "realms.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A misspelt field would make a realm without its pin, or with the key
// the user meant for another field: the realms file refuses unknown
// fields, and nothing is written or sent.
func TestInitRealmsFileRefusesUnknownFields(t *testing.T) {
	e := newEnv(t)
	file := writeFile(t, `[{"name":"a","server":"http://127.0.0.1:1","token":"x","provisioning_kay":"`+testProvKey+`"},
		{"name":"b","server":"http://127.0.0.1:2","token":"y","provisioning_key":"`+testProvKey+`"}]`)
	r := e.run("init", "--realms", file, "--insecure")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown field "provisioning_kay"`) {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(e.config); err == nil {
		t.Fatal("a configuration was written")
	}
}

// The set's shape is checked before anything is sent: t ≤ n/2 (two
// disjoint sets of t realms could each recover a different version), one
// realm, a realm without a provisioning key.
func TestInitRealmsRefusesBadSets(t *testing.T) {
	realm := func(name string) string {
		return `{"name":"` + name + `","server":"http://127.0.0.1:1","token":"x","provisioning_key":"` + testProvKey + `"}`
	}
	for _, c := range []struct {
		name, file string
		args       []string
		want       string
	}{
		{"threshold at half", "[" + realm("a") + "," + realm("b") + "," + realm("c") + "," + realm("d") + "]", []string{"--threshold", "2"}, "threshold 2 of 4 realms"},
		{"one realm", "[" + realm("a") + "]", nil, "a realm set has 2 to 8 realms"},
		{"no provisioning key", `[{"name":"a","server":"http://127.0.0.1:1","token":"x"},` + realm("b") + "]", nil, "realm a"},
		{"two realms one name", "[" + realm("a") + "," + realm("a") + "]", nil, "two realms are named a"},
		{"not a list", `{"name":"a"}`, nil, "is not a JSON list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.run(append([]string{"init", "--realms", writeFile(t, c.file), "--insecure"}, c.args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, want an error with %q:\n%s", r.code, c.want, r.stderr)
			}
			if _, err := os.Stat(e.config); err == nil {
				t.Fatal("a configuration was written")
			}
		})
	}
}

// --realms takes every server from its file; the single vault's flags
// beside it are a mistake, not something to ignore.
func TestInitRealmsFlagConflicts(t *testing.T) {
	file := writeFile(t, "[]")
	for _, args := range [][]string{
		{"init", "--realms", file, "--server", "http://127.0.0.1:1"},
		{"init", "--realms", file, "--existing"},
		{"init", "--realms", file, "--key", "00"},
		{"init", "--threshold", "2"},
		{"init", "--force", "--password"},
	} {
		e := newEnv(t)
		if r := e.run(args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage):\n%s", args, r.code, r.stderr)
		}
	}
}

func TestProvisioningFingerprint(t *testing.T) {
	// SHA-256 of the 32 bytes of testProvKey, first 8 bytes; computed
	// independently with: python3 -c "import hashlib;print(hashlib.sha256(bytes.fromhex(K)).hexdigest()[:16])"
	got := provisioningFingerprint(testProvKey)
	if got != fingerprintVector {
		t.Fatalf("fingerprint %q, want %q", got, fingerprintVector)
	}
	if provisioningFingerprint("zz") != "(invalid)" {
		t.Fatal("an invalid key has a fingerprint")
	}
}

func FuzzReadRealmsFile(f *testing.F) {
	f.Add([]byte(`[{"name":"a","server":"http://127.0.0.1:1","token":"x","provisioning_key":"` + testProvKey + `","operator":"o"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"name":1}`))
	f.Add([]byte(`[{"name":"\u202e","extra":1}]`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "realms.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		set, err := readRealmsFile(p)
		if err != nil {
			return
		}
		for _, e := range set {
			if e == nil || e.ProvisioningKey != strings.ToLower(e.ProvisioningKey) {
				t.Fatalf("entry %+v", e)
			}
		}
	})
}

const fingerprintVector = "4915 4bf0 f5d0 1c93"

// --token and --server are a single vault's: beside --realms (whose FILE
// gives each realm's server and token) they would be silently ignored, so
// they are a usage error, and nothing is sent or written.
func TestInitRealmsRefusesSingleVaultFlags(t *testing.T) {
	file := writeFile(t, `[{"name":"a","server":"http://127.0.0.1:1","token":"x","provisioning_key":"`+testProvKey+`"},
		{"name":"b","server":"http://127.0.0.1:2","token":"y","provisioning_key":"`+testProvKey+`"}]`)
	for _, extra := range [][]string{{"--token", "secret"}, {"--server", "http://127.0.0.1:3"}, {"--existing", "--set-code", "AAAAAAAAAAAAAAAA", "--token", "secret"}} {
		e := newEnv(t)
		r := e.run(append([]string{"init", "--realms", file, "--insecure"}, extra...)...)
		if r.code != 2 || !strings.Contains(r.stderr, extra[len(extra)-2]) || !strings.Contains(r.stderr, "FILE") {
			t.Errorf("init --realms %v: exit %d, stderr:\n%s", extra, r.code, r.stderr)
		}
		if _, err := os.Stat(e.config); err == nil {
			t.Errorf("init --realms %v wrote a configuration", extra)
		}
	}
}

// A first registration that no realm has committed yet (the client was cut,
// or a realm was down) may never open: fewer than t realms may hold it. A
// backup to its key now could be lost, so `coffer backup` refuses until the
// registration is committed, and says how to finish it.
func TestBackupRefusedWhileTheRegistrationIsUncommitted(t *testing.T) {
	e := newEnv(t)
	k, err := client.NewBackupKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	recipient, _ := k.AgeRecipient()
	manifest := []byte("a manifest, as far as the configuration's checks go")
	version := &client.RealmVersion{ManifestHash: hex.EncodeToString(protocol.ManifestHash(manifest)), Manifest: base64.StdEncoding.EncodeToString(manifest)}
	rc := &client.RealmsConfig{Threshold: 2, SetID: strings.Repeat("11", 16), Anchor: strings.Repeat("22", 32), Version: version,
		Change: &client.RealmChange{Kind: "register", State: "put", ManifestHash: version.ManifestHash, Manifest: version.Manifest, Resume: "AAAA"}}
	for _, name := range []string{"a", "b", "c"} {
		rc.Set = append(rc.Set, &client.RealmEntry{Name: name, Server: "http://127.0.0.1:1", Token: "x", ProvisioningKey: testProvKey})
	}
	cfg := &client.Config{Version: client.ConfigVersion, Mode: client.ModePassword, AgeRecipient: recipient, Realms: rc}
	if err := cfg.Save(e.config); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("data"), 0o600)
	out := filepath.Join(t.TempDir(), "b.age")
	e.fails("`coffer password change --resume`", "backup", src, "-o", out)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a backup was written")
	}
	// Once its first commit was sent (C3), K opens from t realms: backups go.
	rc.Change.CommitSent, rc.Change.State = true, "commit"
	if err := cfg.Save(e.config); err != nil {
		t.Fatal(err)
	}
	e.ok("backup", src, "-o", out)

	// A burn that cleared an abandoned first registration leaves the set
	// without a version (`coffer realms burn`): its recipient is a key no
	// realm holds, and a backup to it could never be opened.
	rc.Change, rc.Version, rc.SetID, rc.Anchor = nil, nil, "", ""
	if err := cfg.Save(e.config); err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	e.fails("holds no registered key", "backup", src, "-o", out)
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a backup was written to a key no realm holds")
	}
}
