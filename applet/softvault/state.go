package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/protocol"
)

// A state folder holds:
//
//	device.key   32 random bytes standing in for the device-unique key (0600)
//	config.json  the options fixed at init (they are part of the identity)
//	store.img    the record store's block device
//	anchor.rpmb  the emulated RPMB holding the monotonic anchor
//	provisioning.key, bundle.cbor   only with `dev`: a development provisioning key
const (
	deviceKeyFile = "device.key"
	configFile    = "config.json"
	devProvKey    = "provisioning.key"
	devBundle     = "bundle.cbor"
)

type config struct {
	MaxLimit uint   `json:"max_limit"`
	Name     string `json:"name"`
}

func initState(ctx context.Context, dir string, maxLimit uint, stdout io.Writer) error {
	if dir == "" {
		return errors.New("init: -state is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, deviceKeyFile)); err == nil {
		return fmt.Errorf("init: %s already holds a vault", dir)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, deviceKeyFile), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return err
	}
	cfg, _ := json.Marshal(config{MaxLimit: maxLimit, Name: "softvault"})
	if err := os.WriteFile(filepath.Join(dir, configFile), cfg, 0o600); err != nil {
		return err
	}
	v, closeStore, err := openVault(ctx, dir, true, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer closeStore()
	id := v.Identity()
	fmt.Fprintf(stdout, "created an INSECURE software vault in %s\n  signing key %x\n  max attempt limit %d\n", dir, id.SigningKey, id.MaxLimit)
	return nil
}

func readDeviceKey(dir string) ([32]byte, error) {
	var key [32]byte
	b, err := os.ReadFile(filepath.Join(dir, deviceKeyFile))
	if err != nil {
		return key, fmt.Errorf("%s is not a vault state folder (run softvault init): %w", dir, err)
	}
	raw, err := hex.DecodeString(string(trimSpace(b)))
	if err != nil || len(raw) != len(key) {
		return key, fmt.Errorf("%s: damaged device key", dir)
	}
	copy(key[:], raw)
	clear(raw)
	return key, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// openVault opens the store and the vault in dir.
func openVault(ctx context.Context, dir string, create bool, flushLatency time.Duration, log *slog.Logger) (*vault.Vault, func() error, error) {
	var cfg config
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not a vault state folder (run softvault init): %w", dir, err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", configFile, err)
	}
	deviceKey, err := readDeviceKey(dir)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(dir, deviceKey, create, flushLatency)
	clear(deviceKey[:])
	if err != nil {
		return nil, nil, err
	}
	fw, err := executableHash()
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	v, err := vault.New(ctx, st, vault.Options{
		Create: create, Log: log, MaxLimit: cfg.MaxLimit, Insecure: true, Name: cfg.Name,
		FirmwareHash: fw, AnchorWrites: st.AnchorWrites,
	})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return v, func() error { v.Close(); return st.Close() }, nil
}

// executableHash stands in for the firmware hash: SHA-256 of this binary.
func executableHash() ([]byte, error) {
	path, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func writeIdentity(ctx context.Context, dir, out string, stdout io.Writer) error {
	v, closeStore, err := openVault(ctx, dir, false, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer closeStore()
	if err := writeCBOR(out, v.Identity()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the unsigned identity to %s; sign it with: softvault provision sign -key KEY -in %s -o BUNDLE\n", out, out)
	return nil
}

func installBundle(ctx context.Context, dir, bundle string, stdout io.Writer) error {
	b, err := os.ReadFile(bundle)
	if err != nil {
		return err
	}
	var signed protocol.SignedIdentity
	if err := protocol.Unmarshal(b, &signed); err != nil {
		return fmt.Errorf("%s: %w", bundle, err)
	}
	v, closeStore, err := openVault(ctx, dir, false, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer closeStore()
	if err := v.InstallIdentity(ctx, signed); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "installed the signed identity bundle\n")
	return nil
}

// devSetup makes dir a ready vault for development: created if missing, and
// provisioned with a development provisioning key kept beside it. A real
// deployment keeps the provisioning key offline instead.
func devSetup(ctx context.Context, dir string, maxLimit uint, stdout io.Writer) error {
	if dir == "" {
		return errors.New("dev: -state is required")
	}
	if _, err := os.Stat(filepath.Join(dir, deviceKeyFile)); errors.Is(err, os.ErrNotExist) {
		if err := initState(ctx, dir, maxLimit, stdout); err != nil {
			return err
		}
	}
	keyPath := filepath.Join(dir, devProvKey)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if _, err := newProvisioningKey(keyPath); err != nil {
			return err
		}
	}
	key, err := readProvisioningKey(keyPath)
	if err != nil {
		return err
	}
	v, closeStore, err := openVault(ctx, dir, false, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer closeStore()
	signed, err := protocol.SignIdentity(key, v.Identity())
	if err != nil {
		return err
	}
	if err := v.InstallIdentity(ctx, signed); err != nil {
		return err
	}
	if err := writeCBOR(filepath.Join(dir, devBundle), &signed); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "development provisioning public key (pin it in clients): %x\n", key.Public())
	return nil
}
