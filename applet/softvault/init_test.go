package softvault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

// cutInitAfterFormat leaves dir as an init cut by a power failure after the
// store's format was anchored and before the vault's identity was committed:
// the folder's files, a formatted empty store.
func cutInitAfterFormat(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// An unfinished init says so (initMarker); older builds did not.
	if err := os.WriteFile(filepath.Join(dir, "init.incomplete"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(config{MaxLimit: 10, Name: "softvault"})
	if err := os.WriteFile(filepath.Join(dir, configFile), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	key := [32]byte{5}
	if err := os.WriteFile(filepath.Join(dir, deviceKeyFile), []byte(hex.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err := emulate.OpenFileDevice(filepath.Join(dir, StoreFile), storeSectors)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	anchor, err := emulate.OpenFileAnchor(filepath.Join(dir, anchorFile), storage.DeriveRPMBKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer anchor.Close()
	if err := store.Format(dev, anchor, store.Options{SealingKey: key}); err != nil {
		t.Fatal(err)
	}
}

// `softvault dev` (what `make vault` runs) on a folder whose init a power
// cut interrupted between the store's format and the identity's commit
// completes it, and the vault it made keeps its identity.
func TestDevSetupCompletesACutInit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cutInitAfterFormat(t, dir)
	if _, err := DevSetup(ctx, dir, 10, io.Discard); err != nil {
		t.Fatalf("dev on a cut init: %v", err)
	}
	inst, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := inst.Vault.Identity().SigningKey
	inst.Close()
	inst, err = Open(ctx, dir, Options{})
	if err != nil || !bytes.Equal(inst.Vault.Identity().SigningKey, id) {
		t.Fatalf("reopened: %v", err)
	}
	inst.Close()
}

// An init cut short after any of its steps leaves a folder that is not
// served, and that init (run again) finishes without changing what the cut
// one wrote; the vault it made keeps its identity.
func TestInitResumesAfterACutAtEveryStep(t *testing.T) {
	ctx := context.Background()
	for _, step := range []string{"marker", "config", "key", "vault"} {
		dir := t.TempDir()
		initStep = func(s string) error {
			if s == step {
				return errPowerCut
			}
			return nil
		}
		err := Init(ctx, dir, 7, io.Discard)
		initStep = func(string) error { return nil }
		if err != errPowerCut {
			t.Fatalf("%s: cut init: %v", step, err)
		}
		if _, err := Open(ctx, dir, Options{}); err == nil || !strings.Contains(err.Error(), "did not finish") {
			t.Fatalf("%s: a cut init is served: %v", step, err)
		}
		key, _ := os.ReadFile(filepath.Join(dir, deviceKeyFile))
		if err := Init(ctx, dir, 7, io.Discard); err != nil {
			t.Fatalf("%s: init again: %v", step, err)
		}
		if again, _ := os.ReadFile(filepath.Join(dir, deviceKeyFile)); key != nil && !bytes.Equal(key, again) {
			t.Fatalf("%s: the device key was replaced", step)
		}
		inst, err := Open(ctx, dir, Options{})
		if err != nil {
			t.Fatalf("%s: open: %v", step, err)
		}
		id := inst.Vault.Identity()
		inst.Close()
		if id.MaxLimit != 7 {
			t.Fatalf("%s: limit %d", step, id.MaxLimit)
		}
		if err := Init(ctx, dir, 7, io.Discard); err == nil || !strings.Contains(err.Error(), "already holds") {
			t.Fatalf("%s: init of a finished vault: %v", step, err)
		}
		inst, err = Open(ctx, dir, Options{})
		if err != nil || !bytes.Equal(inst.Vault.Identity().SigningKey, id.SigningKey) {
			t.Fatalf("%s: identity after reopen: %v", step, err)
		}
		inst.Close()
	}
}

var errPowerCut = errors.New("test: power cut")

// A finished vault whose anchor file the host deleted (or emptied) is never
// formatted again: open, init and dev all refuse, the store file is left as
// it was, and with the anchor back the vault is there.
func TestFinishedVaultNeverReformatted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := DevSetup(ctx, dir, 10, io.Discard); err != nil {
		t.Fatal(err)
	}
	inst, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := inst.Vault.Identity().SigningKey
	inst.Close()
	anchor := filepath.Join(dir, anchorFile)
	if err := os.Rename(anchor, anchor+".kept"); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join(dir, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, Options{}); err == nil {
		t.Fatal("open served a vault without its anchor")
	}
	if err := Init(ctx, dir, 10, io.Discard); err == nil {
		t.Fatal("init started over")
	}
	if _, err := DevSetup(ctx, dir, 10, io.Discard); err == nil {
		t.Fatal("dev started over")
	}
	if now, err := os.ReadFile(filepath.Join(dir, StoreFile)); err != nil || !bytes.Equal(now, img) {
		t.Fatalf("the store file changed (%v)", err)
	}
	if err := os.Rename(anchor+".kept", anchor); err != nil {
		t.Fatal(err)
	}
	inst, err = Open(ctx, dir, Options{})
	if err != nil || !bytes.Equal(inst.Vault.Identity().SigningKey, id) {
		t.Fatalf("with the anchor back: %v", err)
	}
	inst.Close()
}
