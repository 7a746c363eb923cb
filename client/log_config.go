package client

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// LogPin is the configuration's `log` object (SPEC.md, "Release log"): the
// release log this account checks every vault against, and what the client
// has verified of it. One per configuration: a realm set's realms are all
// checked against it.
type LogPin struct {
	// Policy is the pinned policy's text form (releaselog.ParsePolicy):
	// the log's origin and release key, its witnesses and the quorum.
	Policy string `json:"policy"`
	// View is this device's verified copy of the log's tree: every
	// checkpoint it accepts must extend it.
	View releaselog.View `json:"view"`
	// Checkpoint is the last checkpoint accepted, as signed (with its
	// cosignatures): evidence if the log is later seen to contradict it.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Revoked is every revocation entry seen in the log, an identity's
	// with the keys it revokes. Remembered, so that a vault reached for
	// the first time after its revocation was read (another realm's
	// contact read it), or presenting the revoked keys in another bundle,
	// is still refused.
	Revoked []*RevokedInfo `json:"revoked,omitempty"`
	// URL, if set, is an address of the log itself or a mirror (its
	// tlog-tiles root: URL/checkpoint), read at every contact besides the
	// vaults' cofferds, which a host cannot hold back. Untrusted like
	// them: nothing it serves is believed before it verifies.
	URL string `json:"url,omitempty"`
}

// RevokedInfo is one revocation entry of the log.
type RevokedInfo struct {
	Target string `json:"target"` // "release" or "identity"
	Hash   string `json:"hash"`   // hex: a release's firmware hash, or an identity's bundle hash
	Index  uint64 `json:"index"`
	Reason string `json:"reason"`
	// Keys, of an identity revocation: the keys of the bundle it names,
	// once found in the log (before or after the revocation). They are
	// what is revoked: a bundle carrying any of them is refused.
	Keys *RevokedKeys `json:"keys,omitempty"`
	// Searched, of an identity revocation: the log's entries before the
	// ones it was read with were searched for its bundle too (the entries
	// read with it and after it always are). Until then the keys it
	// revokes may be unknown, and no vault is trusted.
	Searched bool `json:"searched,omitempty"`
}

// RevokedKeys are a revoked identity's keys (hex) and where its bundle is
// in the log.
type RevokedKeys struct {
	BundleIndex uint64 `json:"bundle_index"`
	SigningKey  string `json:"signing_key"`
	AKEKey      string `json:"ake_key"`
	HPKEKey     string `json:"hpke_key"`
}

// LoggedInfo is where a pinned vault's bundle and release were found in the
// log (VaultInfo.Logged).
type LoggedInfo struct {
	BundleIndex    uint64 `json:"bundle_index"`
	ReleaseIndex   uint64 `json:"release_index"`
	ReleaseName    string `json:"release_name"`
	ReleaseVersion uint64 `json:"release_version"`
	Board          string `json:"board"`
}

// NewLogPin pins the policy in text (as `coffer init --log-policy FILE` and
// `coffer log pin FILE` read it). Nothing of the log is known yet: the first
// contact reads it from its first entry.
func NewLogPin(text []byte) (*LogPin, error) {
	p, err := releaselog.ParsePolicy(text)
	if err != nil {
		return nil, err
	}
	return &LogPin{Policy: p.String()}, nil
}

// policy parses the pinned policy.
func (lp *LogPin) policy() (*releaselog.Policy, error) {
	return releaselog.ParsePolicy([]byte(lp.Policy))
}

func (lp *LogPin) validate() error {
	if _, err := lp.policy(); err != nil {
		return fmt.Errorf("log.policy: %w", err)
	}
	if lp.URL != "" {
		if _, err := parseLogURL(lp.URL); err != nil {
			return err
		}
	}
	v := lp.View
	if v.Size == 0 && (len(v.Root) != 0 || len(v.Range) != 0) || v.Size > 0 && len(v.Root) != 32 {
		return errors.New("log.view is not a view of the log (size, 32-byte root, range)")
	}
	for _, r := range lp.Revoked {
		if r == nil || r.Target != "release" && r.Target != "identity" {
			return errors.New("log.revoked holds an entry that is not a release's or an identity's revocation")
		}
		if b, err := hex.DecodeString(r.Hash); err != nil || len(b) != 32 {
			return errors.New("log.revoked holds a hash that is not a hex SHA-256")
		}
		if (r.Keys != nil || r.Searched) && r.Target != "identity" {
			return errors.New("log.revoked holds keys or a search state for a release's revocation")
		}
		if r.Keys != nil && r.Keys.identityKeys() == nil {
			return errors.New("log.revoked holds a revoked key that is not 32 hex-encoded bytes")
		}
	}
	return nil
}

// identityKeys decodes the keys, or nil if any is not 32 hex bytes.
func (k *RevokedKeys) identityKeys() *releaselog.IdentityKeys {
	var out [3][]byte
	for i, s := range []string{k.SigningKey, k.AKEKey, k.HPKEKey} {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil
		}
		out[i] = b
	}
	return &releaselog.IdentityKeys{Signing: out[0], AKE: out[1], HPKE: out[2]}
}

// PinLogPolicy pins the policy in text for this configuration. The same
// policy again changes nothing, and one that differs only in its max-age
// keeps what was verified of the log (the same log, witnesses and quorum).
// Another one starts the log's view afresh, forgets the log URL and where
// every vault was found (the indexes were of another log), so that the
// next contact checks each vault against the new log.
func (c *Config) PinLogPolicy(text []byte) (changed bool, err error) {
	lp, err := NewLogPin(text)
	if err != nil {
		return false, err
	}
	if c.Log != nil && c.Log.Policy == lp.Policy {
		return false, nil
	}
	if c.Log != nil && sameLog(c.Log.Policy, lp.Policy) {
		c.Log.Policy = lp.Policy
		return true, nil
	}
	c.Log = lp
	for _, v := range c.vaults() {
		if *v != nil {
			(*v).Logged = nil
		}
	}
	return true, nil
}

// vaults are the pinned vault infos of the configuration: the single
// vault's, or every realm's.
func (c *Config) vaults() []**VaultInfo {
	if c.Realms == nil {
		return []**VaultInfo{&c.Vault}
	}
	var out []**VaultInfo
	for _, e := range append(append([]*RealmEntry{}, c.Realms.Set...), c.Realms.Retiring...) {
		out = append(out, &e.Vault)
	}
	return out
}

// revoked finds the remembered revocation of a release (its firmware hash)
// or an identity (its bundle hash), or nil.
func (lp *LogPin) revoked(target releaselog.Kind, hash []byte) *RevokedInfo {
	for _, r := range lp.Revoked {
		if r.Target != target.String() {
			continue
		}
		if b, _ := hex.DecodeString(r.Hash); bytes.Equal(b, hash) {
			return r
		}
	}
	return nil
}

// sameLog: two policies of the same log, witnesses and quorum, which may
// differ in their max-age.
func sameLog(a, b string) bool {
	pa, errA := releaselog.ParsePolicy([]byte(a))
	pb, errB := releaselog.ParsePolicy([]byte(b))
	if errA != nil || errB != nil {
		return false
	}
	pa.MaxAge, pb.MaxAge = 0, 0
	return pa.String() == pb.String()
}

// PinLogURL sets the log URL read besides the vaults' cofferds ("": none).
// A policy must be pinned first.
func (c *Config) PinLogURL(u string) (changed bool, err error) {
	if c.Log == nil {
		return false, errors.New("client: pin the release log's policy before its URL")
	}
	if u != "" {
		if _, err := parseLogURL(u); err != nil {
			return false, fmt.Errorf("client: %w", err)
		}
	}
	changed = c.Log.URL != u
	c.Log.URL = u
	return changed, nil
}
