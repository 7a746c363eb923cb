package client

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// RealmsConfig is the configuration's `realms` object (SPEC.md,
// "Configuration"; protocol/REALMS.md section 4): a password-mode account
// whose key is spread over n realms, any t of which recover it. It replaces
// the single vault's `server` and its trust state, which each realm entry
// holds for itself.
type RealmsConfig struct {
	Threshold int           `json:"threshold"`           // t, with n/2 < t ≤ n
	Limit     uint          `json:"limit,omitempty"`     // the user's --limit: the bound against t − 1 realms (12.3)
	PerRealm  uint          `json:"per_realm,omitempty"` // L = ⌊limit/(n − t + 1)⌋, what each realm counts to
	Set       []*RealmEntry `json:"set"`
	SetID     string        `json:"set_id,omitempty"` // hex, 16 bytes: names the user inside the cryptography
	Anchor    string        `json:"anchor,omitempty"` // hex Ed25519 public key: signs every version of the set (5.6)
	Version   *RealmVersion `json:"version,omitempty"`
	// Change is an unfinished change, delete, repair or key rotation
	// (REALMS.md 10, C1-C6; 13): kept until the old version is erased
	// everywhere, so that any later run carries it forward.
	Change *RealmChange `json:"change,omitempty"`
	// Retiring are realms a repair took out of the set: kept until their
	// old version is deleted there (13.3).
	Retiring []*RealmEntry `json:"retiring,omitempty"`
}

// RealmChange is the configuration's `change` object: the version W being
// delivered, what this device has done about it, and the resume blob that
// lets any device holding K finish it (5.7).
type RealmChange struct {
	Kind         string `json:"kind"`  // "register" (the first version), "change", "repair", "rotate" or "delete"
	State        string `json:"state"` // "put": W is being delivered; "commit": its first commit was sent (C3); "delete": deleting
	ManifestHash string `json:"manifest_hash,omitempty"`
	Manifest     string `json:"manifest,omitempty"` // base64
	// Old is the version W replaces (the set's version when the change
	// began): the one whose holders C5 counts.
	Old        *RealmVersion `json:"old,omitempty"`
	CommitSent bool          `json:"commit_sent"`
	Forced     bool          `json:"forced,omitempty"`
	Resume     string        `json:"resume,omitempty"` // base64 of the resume blob
	// Erased lists the signing keys (hex) of the realms whose receipts
	// showed the old version gone (W committed alone, or deleted).
	Erased []string `json:"erased,omitempty"`
}

func (c *RealmChange) validate() error {
	switch c.Kind {
	case "register", "change", "repair", "rotate", "delete":
	default:
		return fmt.Errorf("change.kind %q is not register, change, repair, rotate or delete", c.Kind)
	}
	if c.Kind != "delete" {
		if _, _, err := c.version().decode(); err != nil {
			return fmt.Errorf("change: %w", err)
		}
		if _, err := base64.StdEncoding.DecodeString(c.Resume); err != nil || c.Resume == "" {
			return errors.New("change.resume is not a base64 resume blob")
		}
	}
	if c.Old != nil {
		if _, _, err := c.Old.decode(); err != nil {
			return fmt.Errorf("change.old: %w", err)
		}
	}
	return nil
}

// version is the change's W as a RealmVersion.
func (c *RealmChange) version() *RealmVersion {
	return &RealmVersion{ManifestHash: c.ManifestHash, Manifest: c.Manifest}
}

// RealmEntry is one realm of the set: where it is, the key that vouches for
// it, and exactly the single vault's trust state (pinned bundle, highest store
// sequence, last receipt), plus the account this user has at its host.
type RealmEntry struct {
	Name            string `json:"name"`
	Server          string `json:"server"`           // cofferd base URL
	Token           string `json:"token"`            // cofferd bearer token
	ProvisioningKey string `json:"provisioning_key"` // hex Ed25519: signs this realm's identity bundle
	Operator        string `json:"operator,omitempty"`

	// Trust state, pinned on first use and updated by the client.
	BundleHash           string            `json:"bundle_hash,omitempty"`
	Vault                *VaultInfo        `json:"vault,omitempty"`
	HighestStoreSequence uint64            `json:"highest_store_sequence"`
	LastReceipt          *RealmReceiptInfo `json:"last_receipt,omitempty"`
	Account              string            `json:"account,omitempty"` // hex account_i from GET /v1/account, then pinned
	// Deleted is this device's signed `deleted` receipt from the realm
	// (base64 of the SignedRealmReceipt): the one thing that lets the
	// account's totals there start again from zero (REALMS.md 6.3).
	Deleted string `json:"deleted,omitempty"`
}

// RealmVersion is the version this device made or last opened: the public
// manifest and its hash.
type RealmVersion struct {
	ManifestHash string `json:"manifest_hash"` // hex
	Manifest     string `json:"manifest"`      // base64 (standard, padded) of the encoded Manifest
}

// RealmReceiptInfo is the last receipt a realm signed for this account, the
// per-realm counterpart of ReceiptInfo: what the rollback tripwires compare
// against.
type RealmReceiptInfo struct {
	Kind               string `json:"kind"`
	VersionID          string `json:"version_id"`
	Limit              uint   `json:"limit"`
	TriesLeft          uint   `json:"tries_left"`
	FailedSinceSuccess uint   `json:"failed_since_success"`
	StoreSequence      uint64 `json:"store_sequence"`
	AttemptsTotal      uint64 `json:"attempts_total"`
	SuccessesTotal     uint64 `json:"successes_total"`
}

// DefaultThreshold is ⌊n/2⌋ + 1: 2 of 3.
func DefaultThreshold(n int) int { return n/2 + 1 }

// validate checks the shape of the set: 2 ≤ n ≤ 8, n/2 < t ≤ n, every entry
// complete, no two entries pinned to one signing key (rule 3), and the set's
// pins well formed when present.
func (rc *RealmsConfig) validate() error {
	n, t := len(rc.Set), rc.Threshold
	if n < protocol.MinRealms || n > protocol.MaxRealms {
		return fmt.Errorf("a realm set has %d to %d realms, this one %d", protocol.MinRealms, protocol.MaxRealms, n)
	}
	if 2*t <= n || t > n {
		return fmt.Errorf("threshold %d of %d realms: it must be more than half of them and at most all (%d to %d)", t, n, n/2+1, n)
	}
	names := map[string]bool{}
	keys := map[string]string{}
	for i, e := range rc.Set {
		if e == nil {
			return fmt.Errorf("realm %d is empty", i+1)
		}
		if e.Name == "" {
			return fmt.Errorf("realm %d has no name", i+1)
		}
		if names[e.Name] {
			return fmt.Errorf("two realms are named %s", QuoteName(e.Name))
		}
		names[e.Name] = true
		if err := e.validate(); err != nil {
			return fmt.Errorf("realm %s: %w", QuoteName(e.Name), err)
		}
		if e.Vault != nil {
			if other, dup := keys[e.Vault.SigningKey]; dup {
				return fmt.Errorf("realms %s and %s are the same device (one signing key): one device counted twice would make t − 1 devices a threshold",
					QuoteName(other), QuoteName(e.Name))
			}
			keys[e.Vault.SigningKey] = e.Name
		}
	}
	if rc.SetID != "" {
		if b, err := hex.DecodeString(rc.SetID); err != nil || len(b) != protocol.SetIDSize {
			return errors.New("set_id is not 16 hex-encoded bytes")
		}
	}
	if rc.Anchor != "" {
		if b, err := hex.DecodeString(rc.Anchor); err != nil || len(b) != ed25519.PublicKeySize {
			return errors.New("anchor is not a hex Ed25519 public key")
		}
	}
	if rc.Version != nil {
		if _, _, err := rc.Version.decode(); err != nil {
			return err
		}
	}
	if rc.Change != nil {
		if err := rc.Change.validate(); err != nil {
			return err
		}
	}
	for _, e := range rc.Retiring {
		if e == nil || e.Name == "" || names[e.Name] {
			return errors.New("a retiring realm is empty, unnamed or named like another realm")
		}
		names[e.Name] = true
		if err := e.validate(); err != nil {
			return fmt.Errorf("retiring realm %s: %w", QuoteName(e.Name), err)
		}
		if e.Vault != nil {
			if _, dup := keys[e.Vault.SigningKey]; dup {
				return fmt.Errorf("retiring realm %s is the same device as a realm of the set", QuoteName(e.Name))
			}
			keys[e.Vault.SigningKey] = e.Name
		}
	}
	return nil
}

func (e *RealmEntry) validate() error {
	if e.Server == "" || e.Token == "" {
		return errors.New("needs a server and a token")
	}
	if _, err := ParseProvisioningKey(e.ProvisioningKey); err != nil {
		return err
	}
	if e.BundleHash != "" {
		if b, err := hex.DecodeString(e.BundleHash); err != nil || len(b) != 32 {
			return errors.New("bundle_hash is not a hex SHA-256")
		}
	}
	if e.Vault != nil {
		if b, err := hex.DecodeString(e.Vault.SigningKey); err != nil || len(b) != ed25519.PublicKeySize {
			return errors.New("vault.signing_key is not a hex Ed25519 public key")
		}
	}
	if e.Account != "" {
		if _, err := e.account(); err != nil {
			return err
		}
	}
	return nil
}

func (e *RealmEntry) account() ([]byte, error) {
	b, err := hex.DecodeString(e.Account)
	if err != nil || len(b) == 0 || len(b) > protocol.MaxUserIDSize {
		return nil, fmt.Errorf("account %q is not 1 to %d hex-encoded bytes", e.Account, protocol.MaxUserIDSize)
	}
	return b, nil
}

// signingKey is the pinned identity's signing key, or nil before the first
// connection.
func (e *RealmEntry) signingKey() []byte {
	if e.Vault == nil {
		return nil
	}
	b, _ := hex.DecodeString(e.Vault.SigningKey)
	return b
}

func (v *RealmVersion) decode() (hash, manifest []byte, err error) {
	hash, err = hex.DecodeString(v.ManifestHash)
	if err != nil || len(hash) != protocol.HashSize {
		return nil, nil, errors.New("version.manifest_hash is not a hex SHA-256")
	}
	manifest, err = base64.StdEncoding.DecodeString(v.Manifest)
	if err != nil || len(manifest) == 0 || len(manifest) > protocol.MaxManifestSize {
		return nil, nil, errors.New("version.manifest is not a base64 manifest of at most 2 KiB")
	}
	if string(protocol.ManifestHash(manifest)) != string(hash) {
		return nil, nil, errors.New("version.manifest does not have version.manifest_hash")
	}
	return hash, manifest, nil
}

func newRealmVersion(manifest []byte) *RealmVersion {
	return &RealmVersion{ManifestHash: hex.EncodeToString(protocol.ManifestHash(manifest)), Manifest: base64.StdEncoding.EncodeToString(manifest)}
}

// setID is the pinned set id, or nil.
func (rc *RealmsConfig) setID() []byte {
	b, _ := hex.DecodeString(rc.SetID)
	if len(b) == 0 {
		return nil
	}
	return b
}

// anchor is the pinned anchor, or nil.
func (rc *RealmsConfig) anchor() []byte {
	b, _ := hex.DecodeString(rc.Anchor)
	if len(b) == 0 {
		return nil
	}
	return b
}

// SetCode is the code that pins this set's anchor on a fresh device (5.6),
// or "" before the set has one.
func (rc *RealmsConfig) SetCode() string {
	if rc.SetID == "" || rc.Anchor == "" {
		return ""
	}
	return realmkey.SetCode(rc.setID(), rc.anchor())
}

// RealmWarning is one warning of REALMS.md section 4, rules 5 and 6, as data
// the CLI prints: what is shared, and by which realms.
type RealmWarning struct {
	What   string   // "provisioning key", "firmware", "host", "insecure"
	Realms []string // the realms' names
	Text   string   // the sentence to show
}

// Warnings lists what makes realms of the set one party rather than several
// (rule 6: a shared provisioning key, firmware or host address; rule 5: all
// realms on one firmware; insecure realms counted as compromised). It needs
// no network: hosts are compared by the URL's host name, or by address when
// lookup (nil: no resolution) resolves them.
func (rc *RealmsConfig) Warnings(lookup func(host string) ([]string, error)) []RealmWarning {
	var out []RealmWarning
	group := func(what string, key func(*RealmEntry) []string, text string) {
		by := map[string][]string{}
		var order []string
		for _, e := range rc.Set {
			seen := map[string]bool{}
			for _, k := range key(e) {
				if k == "" || seen[k] {
					continue
				}
				seen[k] = true
				if by[k] == nil {
					order = append(order, k)
				}
				by[k] = append(by[k], e.Name)
			}
		}
		reported := map[string]bool{}
		for _, k := range order {
			names := by[k]
			if len(names) < 2 || reported[strings.Join(names, "\x00")] {
				continue
			}
			reported[strings.Join(names, "\x00")] = true
			out = append(out, RealmWarning{What: what, Realms: names, Text: fmt.Sprintf(text, realmNames(names))})
		}
	}
	group("provisioning key", func(e *RealmEntry) []string { return []string{strings.ToLower(e.ProvisioningKey)} },
		"realms %s share a provisioning key: one key holder vouches for them all, so they may be one operator")
	group("host", func(e *RealmEntry) []string { return hostKeys(e.Server, lookup) },
		"realms %s are served from the same host: their operator is one party, which counts as one realm for every goal")
	firmware := map[string]bool{}
	all := true
	for _, e := range rc.Set {
		if e.Vault == nil {
			all = false
			continue
		}
		firmware[e.Vault.FirmwareHash] = true
	}
	if all && len(firmware) == 1 && len(rc.Set) > 1 {
		var names []string
		for _, e := range rc.Set {
			names = append(names, e.Name)
		}
		out = append(out, RealmWarning{What: "firmware", Realms: names, Text: fmt.Sprintf(
			"realms %s all run the same firmware: one exploit of it may open them all (REALMS.md section 15)", realmNames(names))})
	} else {
		group("firmware", func(e *RealmEntry) []string {
			if e.Vault == nil {
				return nil
			}
			return []string{e.Vault.FirmwareHash}
		}, "realms %s run the same firmware: one exploit of it may open them all")
	}
	var insecure []string
	for _, e := range rc.Set {
		if e.Vault != nil && e.Vault.Insecure {
			insecure = append(insecure, e.Name)
		}
	}
	if len(insecure) > 0 {
		text := fmt.Sprintf("%s %s INSECURE (software or emulated vaults): their operators hold their keys, so each counts as a compromised realm",
			realmSubject(insecure), isAre(len(insecure)))
		if len(insecure) == 1 {
			text = fmt.Sprintf("%s is INSECURE (a software or emulated vault): its operator holds its keys, so it counts as a compromised realm", realmSubject(insecure))
		}
		out = append(out, RealmWarning{What: "insecure", Realms: insecure, Text: text})
	}
	return out
}

func hostKeys(server string, lookup func(string) ([]string, error)) []string {
	u, err := url.Parse(server)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	h := strings.ToLower(u.Hostname())
	keys := []string{"name " + h}
	if ip := net.ParseIP(h); ip != nil {
		return []string{"addr " + ip.String()}
	}
	if lookup != nil {
		if addrs, err := lookup(h); err == nil {
			for _, a := range addrs {
				if ip := net.ParseIP(a); ip != nil {
					keys = append(keys, "addr "+ip.String())
				}
			}
		}
	}
	return keys
}

// realmSubject is "realm A" for one name, "realms A and B" for more.
func realmSubject(names []string) string {
	if len(names) == 1 {
		return "realm " + realmNames(names)
	}
	return "realms " + realmNames(names)
}

// isAre is the verb that agrees with n things.
func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// realmNames lists realm names for a sentence: "A and B", "A, B and C".
func realmNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = QuoteName(n)
	}
	if len(q) <= 2 {
		return strings.Join(q, " and ")
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}
