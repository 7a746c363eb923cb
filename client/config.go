package client

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cofferhsm/coffer/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"
)

// ConfigVersion is the version of the configuration file format.
const ConfigVersion = 1

// Modes: how the account keeps its backup key.
const (
	ModePassword = "password" // K is wrapped in the vault behind a password
	ModeKey      = "key"      // the user keeps K as the 64-digit key
)

// Config is the client's configuration file (SPEC.md, "Configuration").
// Besides what the user set, it holds what the client must remember to
// trust the vault: the pinned identity bundle and the highest store
// sequence seen. It holds no secret except the cofferd token, and is
// written with mode 0600.
type Config struct {
	Version int    `json:"version"`
	Mode    string `json:"mode"` // ModePassword or ModeKey

	// AgeRecipient is the public age recipient derived from K: all that a
	// backup needs.
	AgeRecipient string `json:"age_recipient"`

	// The vault, in password mode.
	Server          string `json:"server,omitempty"`           // cofferd base URL
	Token           string `json:"token,omitempty"`            // cofferd bearer token
	ProvisioningKey string `json:"provisioning_key,omitempty"` // hex Ed25519 public key that signs vault bundles
	UserID          string `json:"user_id,omitempty"`          // hex, from cofferd's GET /v1/account
	Limit           uint   `json:"limit,omitempty"`            // attempt limit chosen at registration
	AllowInsecure   bool   `json:"allow_insecure,omitempty"`   // the user accepted an insecure vault (--insecure)
	// CA is a file of PEM certificates trusted, besides the system's, for
	// TLS to cofferd (a private CA): set by init --ca or `coffer config
	// set ca`. A path, not the certificates: replacing the file renews
	// them.
	CA string `json:"ca,omitempty"`
	// Generation names the registration that holds this account's key
	// (from the vault's signed receipts). A receipt for another one means
	// the vault no longer holds that key.
	Generation uint64 `json:"generation,omitempty"`

	// Trust state, updated by the client.
	BundleHash           string       `json:"bundle_hash,omitempty"` // hex SHA-256 of the pinned bundle's signed body
	Vault                *VaultInfo   `json:"vault,omitempty"`       // what the pinned bundle says
	HighestStoreSequence uint64       `json:"highest_store_sequence"`
	LastReceipt          *ReceiptInfo `json:"last_receipt,omitempty"`

	// Realms, in password mode instead of Server and its trust state: the
	// key spread over t of n vaults (realm_config.go).
	Realms *RealmsConfig `json:"realms,omitempty"`

	// Log pins the release log every vault of this configuration is
	// checked against (log_config.go); nil: none pinned, and vaults are
	// used unverified only when insecure vaults are allowed.
	Log *LogPin `json:"log,omitempty"`
}

// VaultInfo is what the pinned identity bundle says about the vault, kept
// so that `coffer status` can show it offline.
type VaultInfo struct {
	Name         string `json:"name"`
	Insecure     bool   `json:"insecure"`
	MaxLimit     uint   `json:"max_limit"`
	SigningKey   string `json:"signing_key"`
	FirmwareHash string `json:"firmware_hash"`
	// The bundle's other keys (hex), pinned with the signing key: an
	// upgrade that keeps all three is shown and accepted once logged; one
	// that changes any needs the user's consent.
	AKEKey  string `json:"ake_key,omitempty"`
	HPKEKey string `json:"hpke_key,omitempty"`
	// Logged is where the bundle and its release were found in the release
	// log (nil: not checked against one).
	Logged *LoggedInfo `json:"logged,omitempty"`
	// ReleaseFloor is the highest logged release version these keys were
	// seen to run: a changed bundle with the same keys is an upgrade only
	// to a logged release above it (0: none known).
	ReleaseFloor uint64 `json:"release_floor,omitempty"`
}

// ReceiptInfo is the last receipt the vault signed for this account.
type ReceiptInfo struct {
	Kind               string `json:"kind"`
	Generation         uint64 `json:"generation"`
	Limit              uint   `json:"limit"`
	TriesLeft          uint   `json:"tries_left"`
	FailedSinceSuccess uint   `json:"failed_since_success"`
	StoreSequence      uint64 `json:"store_sequence"`
	AttemptsTotal      uint64 `json:"attempts_total"`
	SuccessesTotal     uint64 `json:"successes_total"`
}

// ErrNoConfig is returned by LoadConfig when the file does not exist.
var ErrNoConfig = errors.New("client: not initialised (no configuration file; run `coffer init`)")

// DefaultConfigPath is $XDG_CONFIG_HOME/coffer/config.json (or the
// platform's user configuration folder).
func DefaultConfigPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		var err error
		if dir, err = os.UserConfigDir(); err != nil {
			return "", fmt.Errorf("client: no configuration folder: %w", err)
		}
	}
	return filepath.Join(dir, "coffer", "config.json"), nil
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoConfig, QuoteName(path))
	}
	if err != nil {
		return nil, nameErr(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("client: configuration %s: %w", QuoteName(path), err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("client: configuration %s: %w", QuoteName(path), err)
	}
	return &c, nil
}

// Validate checks the fields a configuration of its mode needs.
func (c *Config) Validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("version %d, this client reads %d", c.Version, ConfigVersion)
	}
	if _, err := ParseRecipient(c.AgeRecipient); err != nil {
		return err
	}
	switch c.Mode {
	case ModeKey:
		if c.Realms != nil {
			return errors.New("a realm set needs password mode")
		}
		return nil
	case ModePassword:
		if c.Log != nil {
			if err := c.Log.validate(); err != nil {
				return err
			}
		}
		if c.Realms != nil {
			if c.Server != "" || c.UserID != "" || c.BundleHash != "" {
				return errors.New("a realm set replaces server, user_id and bundle_hash: give one or the other")
			}
			return c.Realms.validate()
		}
		return c.validateVault()
	}
	return fmt.Errorf("unknown mode %q", c.Mode)
}

// validateVault checks what talking to the vault needs.
func (c *Config) validateVault() error {
	if c.Server == "" || c.Token == "" {
		return errors.New("password mode needs a server and a token")
	}
	if _, err := c.provisioningKey(); err != nil {
		return err
	}
	if _, err := c.userID(); err != nil {
		return err
	}
	if c.BundleHash != "" {
		if b, err := hex.DecodeString(c.BundleHash); err != nil || len(b) != 32 {
			return errors.New("bundle_hash is not a hex SHA-256")
		}
	}
	return nil
}

// ParseProvisioningKey reads a hex Ed25519 public key.
func ParseProvisioningKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("provisioning key must be %d hex digits (an Ed25519 public key)", 2*ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

func (c *Config) provisioningKey() (ed25519.PublicKey, error) {
	return ParseProvisioningKey(c.ProvisioningKey)
}

func (c *Config) userID() ([]byte, error) {
	b, err := hex.DecodeString(c.UserID)
	if err != nil || len(b) == 0 || len(b) > 64 {
		return nil, fmt.Errorf("user_id %q is not 1 to 64 hex-encoded bytes", c.UserID)
	}
	return b, nil
}

// Save writes the configuration atomically (a temporary file renamed over
// the old one), mode 0600, creating its folder (0700) if needed.
func (c *Config) Save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}
