package main

import (
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// testLog is a release log the CLI reads instead of cofferd's (env's
// logSource), with its policy in a file.
type testLog struct {
	t      *testing.T
	l      *releaselogtest.Log
	src    *releaselogtest.Source
	policy string // the policy file
}

// pinLog makes a release log for this environment's runs, logs host's
// vault in it (its release and bundle), and returns it; args() are the
// init flags that pin it.
func (e *env) pinLog(host *fakehost.Host) *testLog {
	lg := e.newLog()
	lg.logVault(host)
	return lg
}

// newLog is pinLog with nothing logged.
func (e *env) newLog() *testLog {
	e.t.Helper()
	l := releaselogtest.New(e.t, "releases.coffer.test", 2)
	lg := &testLog{t: e.t, l: l, src: &releaselogtest.Source{Log: l, Cosigners: 2}, policy: filepath.Join(e.t.TempDir(), "policy.txt")}
	if err := os.WriteFile(lg.policy, []byte(l.Policy(2).String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.logSource = lg.src
	return lg
}

func (lg *testLog) args() []string { return []string{"--log-policy", lg.policy} }

func boardFor(id *protocol.Identity) string {
	if id.Insecure {
		return "software"
	}
	return "usbarmory"
}

// logVault logs the host's current vault: a release of its firmware and
// its bundle. It returns their indexes.
func (lg *testLog) logVault(host *fakehost.Host) (release, bundle uint64) {
	id := host.VaultIdentity()
	release = lg.l.Append(releaselogtest.Release(lg.l.Size()+1, boardFor(id), id.FirmwareHash))
	return release, lg.logBundle(host, id)
}

// logBundle logs id's bundle, signed by the host's provisioning key.
func (lg *testLog) logBundle(host *fakehost.Host, id *protocol.Identity) uint64 {
	var si protocol.SignedIdentity
	if err := protocol.Decode(host.SignIdentity(nil, id), protocol.TypeIdentity, &si); err != nil {
		lg.t.Fatal(err)
	}
	return lg.l.Append(&releaselog.Entry{Kind: releaselog.KindIdentity, Identity: &si})
}

// The pinned log is kept in the configuration and shown by status; a vault
// found in it is recorded with where.
func TestInitPinsTheReleaseLog(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{})
	e := passwordEnv(t, host, false)
	cfg := e.configFile()
	if cfg.Log == nil || cfg.Vault.Logged == nil || cfg.Vault.Logged.BundleIndex != 1 || cfg.Vault.Logged.ReleaseIndex != 0 || cfg.Log.View.Size != 2 {
		t.Fatalf("config after init: log %+v, vault %+v", cfg.Log, cfg.Vault)
	}
	r := e.ok("status")
	for _, want := range []string{"release log:      releases.coffer.test, 2 of 2 witnesses; 2 entries verified, 0 revocations",
		"vault in the log: at index 1 (its release \"v1\", version 1, usbarmory, at index 0)",
		"bundle and release in the release log, not revoked"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not say %q:\n%s", want, r.stdout)
		}
	}
	// A bad policy file is refused before anything is sent.
	bad := filepath.Join(t.TempDir(), "bad.txt")
	os.WriteFile(bad, []byte("origin x\nquorum 1\n"), 0o600)
	e2 := newEnv(t)
	if r := e2.run("init", "--password", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex(), "--log-policy", bad); r.code != 2 || !strings.Contains(r.stderr, "bad log policy") {
		t.Errorf("a bad policy: %+v", r)
	}
	if r := e2.run("init", "--log-policy", bad); r.code != 2 || !strings.Contains(r.stderr, "--log-policy is for a vault") {
		t.Errorf("--log-policy in key mode: %+v", r)
	}
}

// A vault not in the log: refused, naming what is missing; --insecure
// lets it through, saying so loudly every time, and is not remembered.
func TestUnloggedVaultThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{Name: "rogue"})
	e := newEnv(t)
	lg := e.newLog()
	e.vars["COFFER_PASSWORD"] = "pw"
	init := append([]string{"init", "--password", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex()}, lg.args()...)
	var si protocol.SignedIdentity
	protocol.Decode(host.SignIdentity(nil, host.VaultIdentity()), protocol.TypeIdentity, &si)
	r := e.fails("the vault is not in the release log", init...)
	if !strings.Contains(r.stderr, client.BundleHash(&si)) || !strings.Contains(r.stderr, `vault "rogue"`) {
		t.Fatalf("the refusal does not name the bundle: %s", r.stderr)
	}
	if _, err := os.Stat(e.config); err == nil {
		t.Fatal("a configuration was written for a refused vault")
	}
	warning := `INSECURE: vault "rogue" is not in the release log (no identity entry holds the bundle ` + client.BundleHash(&si)
	r = e.ok(append(init, "--insecure")...)
	if !strings.Contains(r.stderr, warning) || !strings.Contains(r.stderr, "continuing only because of --insecure") {
		t.Fatalf("init --insecure did not say so:\n%s\n%s", r.stdout, r.stderr)
	}
	// allow_insecure is saved; letting an unlogged vault through is not.
	e.fails("the vault is not in the release log", "status")
	if r := e.ok("status", "--insecure"); !strings.Contains(r.stderr, warning) || !strings.Contains(r.stdout, "NOT in the release log (accepted with --insecure)") {
		t.Fatalf("status --insecure:\n%s\n%s", r.stdout, r.stderr)
	}
	// Logged now: no warning.
	lg.logVault(host)
	if r := e.ok("status"); strings.Contains(r.stderr, "INSECURE") {
		t.Fatalf("a logged vault still warned:\n%s", r.stderr)
	}
}

// An old configuration, or a dev setup: no policy pinned. Allowed only
// with insecure vaults allowed, with a warning at every contact; `coffer
// log pin` pins one later.
func TestNoPolicyAndLogPin(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{Insecure: true})
	e := newEnv(t)
	e.vars["COFFER_PASSWORD"] = "pw"
	r := e.ok("init", "--password", "--insecure", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex())
	const warning = `WARNING: vault "test vault" is NOT checked against a release log`
	if !strings.Contains(r.stderr, warning) {
		t.Fatalf("init did not warn:\n%s", r.stderr)
	}
	if r := e.ok("status"); !strings.Contains(r.stderr, warning) || !strings.Contains(r.stdout, "release log:      NONE pinned") {
		t.Fatalf("status:\n%s\n%s", r.stdout, r.stderr)
	}
	lg := e.newLog()
	r = e.ok("log", "pin", lg.policy)
	if !strings.Contains(r.stdout, "Pinned the release log's policy") || !strings.Contains(r.stdout, "origin releases.coffer.test") {
		t.Fatalf("log pin:\n%s", r.stdout)
	}
	if r := e.ok("log", "pin", lg.policy); !strings.Contains(r.stdout, "already pinned") {
		t.Fatalf("log pin again:\n%s", r.stdout)
	}
	e.fails("the vault is not in the release log", "status")
	lg.logVault(host)
	if r := e.ok("status"); strings.Contains(r.stderr, "WARNING") || !strings.Contains(r.stdout, "vault in the log: at index 1") {
		t.Fatalf("status after pinning:\n%s\n%s", r.stdout, r.stderr)
	}
	e.fails("usage: coffer log pin FILE [--url URL]", "log")
}

// Revocation reaches the CLI; --insecure does not get past it.
func TestRevokedVaultThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{})
	e := passwordEnv(t, host, false)
	lg := e.logSource.(*releaselogtest.Source).Log
	idx := lg.Append(&releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{
		Target: releaselog.KindRelease, Hash: host.VaultIdentity().FirmwareHash, Reason: "CVE-2031-0001: keys readable over JTAG"}})
	for _, args := range [][]string{{"status"}, {"status", "--insecure"}, {"key", "export-age", "--insecure"}} {
		r := e.fails("the release log REVOKES this vault", args...)
		if !strings.Contains(r.stderr, fmt.Sprintf("index %d", idx)) || !strings.Contains(r.stderr, "keys readable over JTAG") {
			t.Fatalf("coffer %v: %s", args, r.stderr)
		}
	}
	if cfg := e.configFile(); len(cfg.Log.Revoked) != 1 {
		t.Fatalf("the revocation was not kept: %+v", cfg.Log.Revoked)
	}
}

// An upgrade with the same keys is shown; new keys need `coffer vault
// accept-new-identity`, which shows both and both log indexes.
func TestUpgradeAndNewIdentityThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id on every login")
	}
	host := fakehost.New(t, fakehost.Options{})
	e := passwordEnv(t, host, false)
	lg := &testLog{t: t, l: e.logSource.(*releaselogtest.Source).Log}
	fw := make([]byte, 32)
	fw[0] = 7
	host.Boot(fw) // the device runs the new release, same keys
	host.Provision()
	id := *host.VaultIdentity()
	ri := lg.l.Append(releaselogtest.Release(5, "usbarmory", id.FirmwareHash))
	lg.logBundle(host, &id)
	r := e.ok("status")
	want := fmt.Sprintf(`vault "test vault" upgraded to release "v5" (version 5), firmware %s, logged at index %d`, hex.EncodeToString(id.FirmwareHash), ri)
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("the upgrade was not shown (want %q):\n%s\n%s", want, r.stdout, r.stderr)
	}
	old := e.configFile().Vault

	host.Replace(fakehost.Options{Name: "new device"})
	_, nb := lg.logVault(host)
	e.fails("coffer vault accept-new-identity", "status")
	r = e.fails("confirm with --yes", "vault", "accept-new-identity")
	newID := host.VaultIdentity()
	for _, want := range []string{"identity keys CHANGED", old.SigningKey, old.AKEKey, hex.EncodeToString(newID.SigningKey), hex.EncodeToString(newID.HPKEKey),
		fmt.Sprintf("logged at index %d", old.Logged.BundleIndex), fmt.Sprintf("logged at index %d", nb)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("accept-new-identity does not show %q:\n%s", want, r.stderr)
		}
	}
	r = e.ok("vault", "accept-new-identity", "--yes")
	if !strings.Contains(r.stdout, `Pinned the new identity of vault "new device"`) || e.configFile().Vault.Name != "new device" {
		t.Fatalf("accept-new-identity --yes:\n%s", r.stdout)
	}
	if r := e.ok("vault", "accept-new-identity"); !strings.Contains(r.stdout, "nothing to accept") {
		t.Fatalf("again:\n%s", r.stdout)
	}
}

// A policy with a max-age, and a host that keeps serving an old
// checkpoint: refused, saying how old and how to get past; a log URL the
// user pins (a mirror that serves the log fresh) gets past it.
func TestStaleLogAndLogURLThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id at init")
	}
	host := fakehost.New(t, fakehost.Options{})
	e := passwordEnv(t, host, false)
	src := e.logSource.(*releaselogtest.Source)
	p := src.Log.Policy(2)
	p.MaxAge = 168 * time.Hour
	file := filepath.Join(t.TempDir(), "policy-max-age.txt")
	if err := os.WriteFile(file, []byte(p.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.ok("log", "pin", file); !strings.Contains(r.stdout, "max-age 168h") || !strings.Contains(r.stdout, "within 7 days") {
		t.Fatalf("log pin:\n%s", r.stdout)
	}
	// Ten days on (this device's last checkpoint is as old as the one its
	// host keeps serving), the log has moved on; the host has not.
	old := time.Now().Add(-10 * 24 * time.Hour)
	frozen := src.Log.CheckpointAtTimes(src.Log.Size(), old, old)
	cfg := e.configFile()
	cfg.Log.Checkpoint = string(frozen)
	if err := cfg.Save(e.config); err != nil {
		t.Fatal(err)
	}
	src.Log.Append(releaselogtest.Release(9, "qemu", make([]byte, 32)))
	e.logSource = &releaselogtest.Source{Log: src.Log, Frozen: frozen}
	r := e.fails("older than its policy's max-age", "status")
	for _, want := range []string{"10 days ago", "coffer log pin FILE --url URL", "--insecure"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, r.stderr)
		}
	}
	mirror := httptest.NewServer(src)
	defer mirror.Close()
	if r := e.ok("log", "pin", file, "--url", mirror.URL); !strings.Contains(r.stdout, "also read at "+mirror.URL) {
		t.Fatalf("log pin --url:\n%s", r.stdout)
	}
	if r := e.ok("status"); !strings.Contains(r.stdout, "also read at "+mirror.URL) || !strings.Contains(r.stdout, "checkpoint cosigned") {
		t.Fatalf("status with a log URL:\n%s\n%s", r.stdout, r.stderr)
	}
	e.fails("not an http(s) URL", "log", "pin", file, "--url", "ftp://log.example/")
	if r := e.ok("log", "pin", file, "--url", ""); !strings.Contains(r.stdout, "Forgot the log URL") {
		t.Fatalf("log pin --url '':\n%s", r.stdout)
	}
	// What the mirror showed a moment ago is fresh: the host's old copy
	// is only noted, until max-age has passed since.
	if r := e.ok("status"); !strings.Contains(r.stderr, "its host serves an older copy of the release log") {
		t.Fatalf("status after the mirror:\n%s", r.stderr)
	}
}
