package soak

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/internal/testbin"
)

// TestSoakHost is the load soak (make soak-host): COFFER_SOAK_DURATION of
// COFFER_SOAK_CLIENTS clients (default 200) through cofferd to a software
// vault process, with the real Argon2id. Every other knob is a
// COFFER_SOAK_* variable (Config.FromEnv). It fails on any failure the
// driver saw: a refusal that was not explicit backpressure, a receipt the
// model did not predict, a counter that went backwards, a total that did
// not survive the vault's restart.
func TestSoakHost(t *testing.T) {
	if os.Getenv("COFFER_SOAK_DURATION") == "" {
		t.Skip("the load soak runs with COFFER_SOAK_DURATION set (make soak-host)")
	}
	var cfg Config
	if err := cfg.FromEnv(); err != nil {
		t.Fatal(err)
	}
	if cfg.VaultBinary == "" {
		cfg.VaultBinary = buildSoftvault(t)
	}
	runSoak(t, cfg)
}

// TestSoakSmoke is a few seconds of the soak in the ordinary suite: a
// handful of clients, one lockout account and one product client, the
// vault in this process, and a cheap Argon2id for the protocol clients
// (the vault cannot tell; the product client keeps the real one).
func TestSoakSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak smoke test runs real Argon2id for its product client")
	}
	runSoak(t, Config{
		Duration:        2 * time.Second,
		Clients:         12,
		ProductClients:  1,
		LockoutAccounts: 1,
		LockoutPause:    500 * time.Millisecond,
		ProductThink:    300 * time.Millisecond,
		ChangeRate:      2,
		LoginRate:       -1,
		Stretch:         Stretch{Passes: 1, MemoryKiB: 64, Lanes: 1},
	})
}

func runSoak(t *testing.T, cfg Config) {
	cfg.StateDir = filepath.Join(t.TempDir(), "vault")
	sockDir, err := os.MkdirTemp("", "soak") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	cfg.SocketDir = sockDir
	cfg.Progress = func(format string, args ...any) { t.Logf(format, args...) }
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.Failures > 0 {
		t.Fatalf("%d failures (above)", rep.Failures)
	}
	// The run did what it was meant to: logins confirmed, guesses
	// counted, a lockout shown, and every account checked on both sides
	// of the restart.
	if rep.Run.ops.restores == 0 || rep.Run.ops.wrong == 0 || (rep.Config.LockoutAccounts > 0 && rep.Run.ops.lockouts == 0) {
		t.Fatalf("the workload did not run: %+v", rep.Run.ops)
	}
	if rep.AccountsMatched != rep.Accounts || rep.Accounts != rep.Config.Clients {
		t.Fatalf("%d of %d accounts matched", rep.AccountsMatched, rep.Accounts)
	}
}

// buildSoftvault builds the softvault command into a temporary folder.
func buildSoftvault(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testbin.Build(dir, "github.com/cofferhsm/coffer/applet/softvault/cmd/softvault"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "softvault")
}
