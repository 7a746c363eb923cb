package softvault

import (
	"context"
	"crypto/ed25519"
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
	"github.com/cofferhsm/coffer/internal/atomicfile"
	"github.com/cofferhsm/coffer/internal/filelock"
	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
)

// A state folder holds:
//
//	device.key   32 random bytes standing in for the device-unique key (0600)
//	config.json  the options fixed at init (they are part of the identity)
//	store.img    the record store's block device
//	anchor.rpmb  the emulated RPMB holding the monotonic anchor
//	provisioning.key, bundle.cbor   only with `dev`: a development provisioning key
//	init.incomplete  only while an init has not finished
//	lock         locked (flock) by the process that has the vault open; it
//	             holds that process's id and command line
const (
	deviceKeyFile          = "device.key"
	configFile             = "config.json"
	DevProvisioningKeyFile = "provisioning.key"
	devBundle              = "bundle.cbor"
	initMarker             = "init.incomplete"
	lockFile               = "lock"
)

// lockState takes the state folder's lock, without waiting. Two processes
// with one vault open would each commit over the other's records and
// anchor, so whoever opens the vault (serve, dev, init, identity, install,
// a test's in-process vault) holds it until it closes the vault; a second
// one is refused, and told which process holds it.
func lockState(dir string) (unlock func(), err error) {
	unlock, err = filelock.TryLock(filepath.Join(dir, lockFile))
	if errors.Is(err, filelock.ErrHeld) {
		return nil, fmt.Errorf("the vault in %s is already open in another process: %w; stop that process first", dir, err)
	}
	return unlock, err
}

type config struct {
	MaxLimit uint   `json:"max_limit"`
	Name     string `json:"name"`
}

// Init creates a new software vault in dir: device key, options, store,
// anchor and identity.
//
// It is restartable: it first writes initMarker, then each file atomically
// (the options before the key), then formats the store and creates the
// identity (applet/startup), and removes the marker last. Run again on a
// folder whose init was cut short (the marker is there), it keeps what was
// written (never a new device key) and finishes. A folder without the marker
// holds a finished vault, which Init refuses to touch.
func Init(ctx context.Context, dir string, maxLimit uint, stdout io.Writer) error {
	if dir == "" {
		return errors.New("init: -state is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockState(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return initLocked(ctx, dir, maxLimit, stdout)
}

// initLocked is Init, for a caller that holds the folder's lock.
func initLocked(ctx context.Context, dir string, maxLimit uint, stdout io.Writer) error {
	resuming := exists(filepath.Join(dir, initMarker))
	if !resuming && exists(filepath.Join(dir, deviceKeyFile)) {
		return fmt.Errorf("init: %s already holds a vault", dir)
	}
	if !resuming {
		if err := writeFileAtomic(dir, initMarker, []byte("softvault init has not finished: run it again\n")); err != nil {
			return err
		}
	}
	if err := initStep("marker"); err != nil {
		return err
	}
	if !exists(filepath.Join(dir, configFile)) {
		cfg, _ := json.Marshal(config{MaxLimit: maxLimit, Name: "softvault"})
		if err := writeFileAtomic(dir, configFile, cfg); err != nil {
			return err
		}
	}
	if err := initStep("config"); err != nil {
		return err
	}
	if !exists(filepath.Join(dir, deviceKeyFile)) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		err := writeFileAtomic(dir, deviceKeyFile, []byte(hex.EncodeToString(key)+"\n"))
		clear(key)
		if err != nil {
			return err
		}
	}
	if err := initStep("key"); err != nil {
		return err
	}
	v, closeStore, err := openVaultLocked(ctx, dir, true, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer closeStore()
	if err := initStep("vault"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, initMarker)); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	id := v.Identity()
	verb := "created"
	if resuming {
		verb = "finished creating"
	}
	fmt.Fprintf(stdout, "%s an INSECURE software vault in %s\n  signing key %x\n  max attempt limit %d\n", verb, dir, id.SigningKey, id.MaxLimit)
	return nil
}

// initStep is called after each step of Init; tests make it fail to cut an
// init short there.
var initStep = func(string) error { return nil }

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// writeFileAtomic writes name in dir so that a crash leaves either no file
// or the whole of it.
func writeFileAtomic(dir, name string, b []byte) error {
	return atomicfile.Write(filepath.Join(dir, name), b)
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

// Options tune an opened software vault.
type Options struct {
	FlushLatency time.Duration // added to every store flush (benchmarks)
	Log          *slog.Logger  // slog.Default() if nil

	// Serve only.
	MaxConnections int           // connections served at once; more are refused: DefaultMaxConnections
	IdleTimeout    time.Duration // a connection with no request for this long is closed: DefaultIdleTimeout
	WriteTimeout   time.Duration // to write one reply to a peer: protocol.DefaultWriteTimeout
}

// Instance is an open software vault.
type Instance struct {
	Vault *vault.Vault
	close func() error
}

// Close wipes the vault's RAM state and closes its store.
func (i *Instance) Close() error { return i.close() }

// Open opens the software vault kept in dir (created by Init or DevSetup).
func Open(ctx context.Context, dir string, opts Options) (*Instance, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	v, closeFn, err := openVault(ctx, dir, opts.FlushLatency, opts.Log)
	if err != nil {
		return nil, err
	}
	return &Instance{Vault: v, close: closeFn}, nil
}

// openVault locks dir and opens the store and the vault in it; the
// function returned closes them and unlocks.
func openVault(ctx context.Context, dir string, flushLatency time.Duration, log *slog.Logger) (*vault.Vault, func() error, error) {
	if !exists(filepath.Join(dir, configFile)) && !exists(filepath.Join(dir, initMarker)) {
		// Said before locking, which would leave a lock file in any folder.
		return nil, nil, fmt.Errorf("%s is not a vault state folder (run softvault init)", dir)
	}
	unlock, err := lockState(dir)
	if err != nil {
		return nil, nil, err
	}
	v, closeFn, err := openVaultLocked(ctx, dir, false, flushLatency, log)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return v, func() error { defer unlock(); return closeFn() }, nil
}

// openVaultLocked opens the store and the vault in dir, whose lock the
// caller holds; with create, it formats the store and creates the identity
// where an init left them undone.
func openVaultLocked(ctx context.Context, dir string, create bool, flushLatency time.Duration, log *slog.Logger) (*vault.Vault, func() error, error) {
	if !create && exists(filepath.Join(dir, initMarker)) {
		return nil, nil, fmt.Errorf("%s: softvault init did not finish (interrupted?): run softvault init (or dev) again to finish it", dir)
	}
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
	fw, err := executableHash()
	if err != nil {
		clear(deviceKey[:])
		return nil, nil, err
	}
	st, err := openStore(ctx, dir, deviceKey, create, flushLatency, vault.Options{
		Log: log, MaxLimit: cfg.MaxLimit, Insecure: true, Name: cfg.Name, FirmwareHash: fw,
	})
	clear(deviceKey[:])
	if err != nil {
		return nil, nil, err
	}
	return st.Vault.Vault, st.Close, nil
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

// WriteIdentity writes the vault's unsigned identity to out, for signing.
func WriteIdentity(ctx context.Context, dir, out string, stdout io.Writer) error {
	v, closeStore, err := openVault(ctx, dir, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer closeStore()
	if err := provision.WriteCBOR(out, v.Identity()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the unsigned identity to %s; sign it with: coffer-provision sign -key KEY -in %s -o BUNDLE\n", out, out)
	return nil
}

// InstallBundle installs a signed identity bundle into the vault in dir.
func InstallBundle(ctx context.Context, dir, bundle string, stdout io.Writer) error {
	b, err := os.ReadFile(bundle)
	if err != nil {
		return err
	}
	var signed protocol.SignedIdentity
	if err := protocol.Unmarshal(b, &signed); err != nil {
		return fmt.Errorf("%s: %w", bundle, err)
	}
	v, closeStore, err := openVault(ctx, dir, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
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

// DevSetup makes dir a ready vault for development: created if missing (or
// finished, if an init was cut short), and
// provisioned with a development provisioning key kept beside it. A real
// deployment keeps the provisioning key offline instead.
func DevSetup(ctx context.Context, dir string, maxLimit uint, stdout io.Writer) (ed25519.PublicKey, error) {
	if dir == "" {
		return nil, errors.New("dev: -state is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockState(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !exists(filepath.Join(dir, deviceKeyFile)) || exists(filepath.Join(dir, initMarker)) {
		if err := initLocked(ctx, dir, maxLimit, stdout); err != nil {
			return nil, err
		}
	}
	keyPath := filepath.Join(dir, DevProvisioningKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if _, err := provision.NewKey(keyPath); err != nil {
			return nil, err
		}
	}
	key, err := provision.ReadKey(keyPath)
	if err != nil {
		return nil, err
	}
	v, closeStore, err := openVaultLocked(ctx, dir, false, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	defer closeStore()
	signed, err := protocol.SignIdentity(key, v.Identity())
	if err != nil {
		return nil, err
	}
	if err := v.InstallIdentity(ctx, signed); err != nil {
		return nil, err
	}
	if err := provision.WriteCBOR(filepath.Join(dir, devBundle), &signed); err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	fmt.Fprintf(stdout, "development provisioning public key (pin it in clients): %x\n", pub)
	return pub, nil
}
