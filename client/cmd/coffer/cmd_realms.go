package main

// Realm mode (protocol/REALMS.md): the key behind a password at t of n
// vaults, each behind its own cofferd and operator. `coffer init --realms`
// registers it, `coffer restore` and `coffer key export-age` recover it,
// `coffer realms` shows the set's health.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
)

// realmsFileEntry is one realm as the user writes it in the file given to
// `coffer init --realms`: only what the user knows; pins come later.
type realmsFileEntry struct {
	Name            string `json:"name"`
	Server          string `json:"server"`
	Token           string `json:"token"`
	ProvisioningKey string `json:"provisioning_key"`
	Operator        string `json:"operator"`
}

// maxRealmsFile bounds the realms file: eight entries fit in far less.
const maxRealmsFile = 64 << 10

// readRealmsFile reads the user's list of realms. Unknown fields are refused,
// so that a misspelt "provisioning_key" is not a realm without a pin.
func readRealmsFile(path string) ([]*client.RealmEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("realms file: %w", err)
	}
	if len(b) > maxRealmsFile {
		return nil, fmt.Errorf("realms file %s is over %d bytes", client.QuoteName(path), maxRealmsFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var list []realmsFileEntry
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("realms file %s is not a JSON list of {name, server, token, provisioning_key, operator}: %w",
			client.QuoteName(path), err)
	}
	var set []*client.RealmEntry
	for _, e := range list {
		set = append(set, &client.RealmEntry{Name: e.Name, Server: e.Server, Token: e.Token,
			ProvisioningKey: strings.ToLower(e.ProvisioningKey), Operator: e.Operator})
	}
	return set, nil
}

// realmFlags are init's realm-mode options.
type realmFlags struct {
	file      string
	threshold int
	limit     uint
	insecure  bool
	force     bool
	pwFile    string
	setCode   string
}

// initRealms registers a new key at a realm set (REALMS.md 4, 5.2, 12.3):
// pin and show every realm and the warnings of rule 6, derive L and print
// the bounds, ask for the password, register, and print the set code.
func (c *cli) initRealms(ctx context.Context, path string, rf realmFlags) error {
	cfg, err := newRealmsConfig(rf)
	if err != nil {
		return err
	}
	t, set := cfg.Realms.Threshold, cfg.Realms.Set
	k, err := client.NewBackupKey(nil)
	if err != nil {
		return err
	}
	defer k.Wipe()
	if cfg.AgeRecipient, err = k.AgeRecipient(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	for _, e := range set {
		c.warnPlainHTTP(e.Server)
	}
	if err := checkWritable(path); err != nil {
		return err
	}
	rs, err := client.OpenRealmSet(cfg, c.realmOptions(path, rf.insecure, rf.force))
	if err != nil {
		return err
	}
	// A probe counts nothing: it pins every realm and shows its state
	// before the password is asked.
	st, err := rs.Probe(ctx)
	if err != nil {
		return err
	}
	c.warnf("Realm set: any %d of these %d realms recover the key.\n", t, len(set))
	for _, rr := range st.Realms {
		c.showRealmIdentity(cfg.Realms, rr)
	}
	for _, w := range cfg.Realms.Warnings(nil) {
		c.warnf("WARNING: %s.\n", w.Text)
	}
	for _, rr := range st.Realms {
		if !rr.Reachable {
			return fmt.Errorf("realm %s cannot be used (%v): every realm must be reached and verified once to pin it and learn its limits; nothing was registered",
				client.QuoteName(rr.Name), rr.Err)
		}
		if rr.State != protocol.RealmNoRecord {
			return fmt.Errorf("realm %s already holds a key record for this account (state %s): a set is registered once; nothing was registered",
				client.QuoteName(rr.Name), realmStateName(rr.State))
		}
	}
	bounds, err := rs.Bounds(rf.limit)
	if err != nil {
		return err
	}
	c.warnf("Guess bounds: %s.\n", bounds.Sentence())

	pw, err := c.secret(rf.pwFile, "COFFER_PASSWORD", "New password", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	report, err := rs.Register(ctx, pw, k, rf.limit)
	// What the device made is kept before anything else (rule C1), also
	// when the registration did not finish.
	if cfg.Realms.SetID != "" {
		if serr := cfg.Save(path); serr != nil {
			return fmt.Errorf("the configuration could not be written: %w", serr)
		}
	}
	if err != nil {
		return err
	}
	for _, o := range report.Realms {
		switch {
		case o.Committed:
			c.warnf("realm %s: committed\n", client.QuoteName(o.Name))
		case o.Registered:
			c.warnf("realm %s: registered, not committed\n", client.QuoteName(o.Name))
		default:
			c.warnf("realm %s: not registered (%s)\n", client.QuoteName(o.Name), printable(fmt.Sprint(o.Err)))
		}
		if o.ManifestErr != nil {
			c.warnf("realm %s: its host did not store the manifest (%s); the others serve it\n", client.QuoteName(o.Name), printable(o.ManifestErr.Error()))
		}
	}
	if !report.Committed {
		return fmt.Errorf("%s. Do not make backups with this configuration yet (%s)", report.Summary(), client.QuoteName(path))
	}
	c.printf("The realms hold this account's backup key behind your password: %s.\n", report.Summary())
	c.printf("Guess bounds: %s.\n", report.Bounds.Sentence())
	c.printf("\nSet code (keep it with your password; a new device needs it to trust your key's versions):\n\n    %s\n\n", report.SetCode)
	c.printf("Backups are encrypted to %s\nConfiguration: %s\n", cfg.AgeRecipient, client.QuoteName(path))
	return nil
}

// newRealmsConfig is the configuration of a realm set before any realm is
// reached: the user's file and threshold.
func newRealmsConfig(rf realmFlags) (*client.Config, error) {
	set, err := readRealmsFile(rf.file)
	if err != nil {
		return nil, err
	}
	t := rf.threshold
	if t == 0 {
		t = client.DefaultThreshold(len(set))
	}
	return &client.Config{Version: client.ConfigVersion, Mode: client.ModePassword, AllowInsecure: rf.insecure,
		Realms: &client.RealmsConfig{Threshold: t, Set: set}}, nil
}

// initRealmsExisting sets up a new device of an existing realm set: it
// recovers K with the password, accepting only versions whose anchor gives
// the set code (REALMS.md 5.6), and pins that anchor.
func (c *cli) initRealmsExisting(ctx context.Context, path string, rf realmFlags) error {
	if rf.limit != 0 {
		return usagef("--limit is chosen at registration; a new device uses the set's")
	}
	cfg, err := newRealmsConfig(rf)
	if err != nil {
		return err
	}
	if rf.setCode == "" {
		return usagef("a new device of a realm set needs --set-code: the code init printed on the first device (it tells your key's versions from ones the servers' operators made)")
	}
	for _, e := range cfg.Realms.Set {
		c.warnPlainHTTP(e.Server)
	}
	if err := checkWritable(path); err != nil {
		return err
	}
	opts := c.realmOptions(path, rf.insecure, false)
	opts.SetCode = rf.setCode
	rs, err := client.OpenRealmSet(cfg, opts) // checks the set's shape
	if err != nil {
		return usagef("%v", strings.TrimPrefix(err.Error(), "client: "))
	}
	pw, err := c.secret(rf.pwFile, "COFFER_PASSWORD", "Password", false)
	if err != nil {
		return err
	}
	defer clear(pw)
	rec, err := rs.Recover(ctx, pw)
	if err != nil {
		return err
	}
	defer rec.Key.Wipe()
	for _, line := range strings.Split(strings.TrimRight(rec.Summary(), "\n"), "\n") {
		c.warnf("%s\n", printable(line))
	}
	if cfg.AgeRecipient, err = rec.Key.AgeRecipient(); err != nil {
		return err
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	c.printf("Recovered this account's backup key from the realms; this device now trusts the set's anchor (set code %s).\n", cfg.Realms.SetCode())
	c.printf("Backups are encrypted to %s\nConfiguration: %s\n", cfg.AgeRecipient, client.QuoteName(path))
	return nil
}

func (c *cli) realmOptions(path string, insecure, force bool) client.RealmOptions {
	// A lying realm's evidence goes beside the configuration, not into the
	// folder a restore writes.
	return client.RealmOptions{HTTPClient: c.httpClient, AllowInsecure: insecure, Force: force, EvidenceDir: filepath.Dir(path)}
}

func (c *cli) warnPlainHTTP(server string) {
	if u, err := url.Parse(server); err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		c.warnf("warning: %s is plain HTTP: anyone on the way can read the token and spend this account's guesses (never the password or the key)\n", server)
	}
}

// showRealmIdentity prints one realm as pinned: name, operator, provisioning
// key fingerprint, firmware, insecure (REALMS.md 4, rule 6).
func (c *cli) showRealmIdentity(rc *client.RealmsConfig, rr client.RealmReport) {
	e := realmEntry(rc, rr.Name)
	c.warnf("  realm %s: operator %s, provisioning key %s", client.QuoteName(e.Name), operatorQuoted(e), provisioningFingerprint(e.ProvisioningKey))
	if v := e.Vault; v != nil {
		c.warnf(", vault %s, firmware %s…, at most %d tries", client.QuoteName(v.Name), shortHex(v.FirmwareHash), v.MaxLimit)
		if v.Insecure {
			c.warnf(", INSECURE")
		}
	}
	if !rr.Reachable {
		c.warnf(", NOT USABLE: %s", printable(strings.TrimPrefix(fmt.Sprint(rr.Err), "client: ")))
	}
	c.warnf("\n")
}

func realmEntry(rc *client.RealmsConfig, name string) *client.RealmEntry {
	for _, e := range rc.Set {
		if e.Name == name {
			return e
		}
	}
	return &client.RealmEntry{Name: name}
}

func operatorText(e *client.RealmEntry) string {
	if e.Operator == "" {
		return "(not given)"
	}
	return client.QuoteName(e.Operator)
}

// provisioningFingerprint is what the user compares with the fingerprint
// the realm's operator publishes: the first 8 bytes of SHA-256 over the
// 32-byte provisioning key, in groups of four hex digits.
func provisioningFingerprint(key string) string {
	b, err := hex.DecodeString(key)
	if err != nil {
		return "(invalid)"
	}
	h := sha256.Sum256(b)
	x := hex.EncodeToString(h[:8])
	return x[0:4] + " " + x[4:8] + " " + x[8:12] + " " + x[12:16]
}

func shortHex(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

func realmStateName(s protocol.RealmState) string {
	switch s {
	case protocol.RealmNoRecord:
		return "no record"
	case protocol.RealmLive:
		return "live"
	case protocol.RealmLocked:
		return "burned (no key)"
	}
	return fmt.Sprintf("state %d", s)
}

// recoverRealmKey gets K from the realm set (REALMS.md 11) and prints the
// per-realm report and the "passwords that may have been tried" figures of
// step 8. The configuration is saved whatever happened.
func (c *cli) recoverRealmKey(ctx context.Context, cfg *client.Config, path string, ks *keySource) (*client.BackupKey, error) {
	rs, err := client.OpenRealmSet(cfg, c.realmOptions(path, ks.insecure, false))
	if err != nil {
		return nil, err
	}
	pw, err := c.secret(ks.pwFile, "COFFER_PASSWORD", "Password", false)
	if err != nil {
		return nil, err
	}
	defer clear(pw)
	rec, err := rs.Recover(ctx, pw)
	c.save(cfg, path)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimRight(rec.Summary(), "\n"), "\n") {
		c.warnf("%s\n", printable(line))
	}
	k := rec.Key
	if r, err := k.AgeRecipient(); err == nil && r != cfg.AgeRecipient {
		c.warnf("warning: the realms released a key whose recipient is %s, but this account backs up to %s\n", r, cfg.AgeRecipient)
	}
	return k, nil
}

// cmdRealms shows the set's health (REALMS.md 13.3). It counts nothing.
func (c *cli) cmdRealms(ctx context.Context, args []string) error {
	fset := c.flags("realms")
	insecure := fset.Bool("insecure", false, "accept realms that say they are insecure")
	if rest, err := parse(fset, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Realms == nil {
		return errors.New("this account has no realm set (coffer init --realms FILE makes one)")
	}
	rs, err := client.OpenRealmSet(cfg, c.realmOptions(path, *insecure, false))
	if err != nil {
		return err
	}
	st, err := rs.Probe(ctx)
	c.save(cfg, path)
	if err != nil {
		return err
	}
	rc := cfg.Realms
	c.printf("realm set:        %d of %d (%s)\n", rc.Threshold, len(rc.Set), client.QuoteName(path))
	if st.Bounds != nil && st.Bounds.NoBound {
		// REALMS.md 12.4: a set whose insecure realms reach t says so on
		// every screen.
		c.printf("insecure:         test set: %d of the %d realms are insecure, as many as the threshold; no guess bound\n", st.Bounds.Insecure, len(rc.Set))
	}
	for _, rr := range st.Realms {
		e := realmEntry(rc, rr.Name)
		c.printf("\nrealm %s\n", client.QuoteName(rr.Name))
		if rr.Reachable {
			c.printf("  reachable:      yes (%s)\n", e.Server)
		} else {
			c.printf("  reachable:      NO (%s): %s\n", e.Server, printable(fmt.Sprint(rr.Err)))
		}
		c.printf("  operator:       %s\n", operatorText(e))
		c.printf("  provisioning key fingerprint: %s\n", provisioningFingerprint(e.ProvisioningKey))
		if v := e.Vault; v != nil {
			c.printf("  vault:          %s, firmware %s, insecure=%v, at most %d tries\n", client.QuoteName(v.Name), v.FirmwareHash, v.Insecure, v.MaxLimit)
		}
		if !rr.Reachable {
			continue
		}
		c.printf("  state:          %s\n", realmStateName(rr.State))
		for _, v := range rr.Versions {
			if v.Status == protocol.VersionEmpty {
				continue
			}
			mark := ""
			if st.Recoverable && bytes.Equal(v.ManifestHash, st.ManifestHash) {
				mark = " (the version a recovery uses)"
			}
			c.printf("  version:        %s…, %s, index %d, %s%s\n", shortHex(hex.EncodeToString(v.VersionID)),
				versionStatusName(v.Status), v.Index, originName(v.Origin), mark)
		}
		c.printf("  tries left:     %d\n", rr.TriesLeft)
		c.printf("  failed since the last success: %d\n", rr.FailedSinceSuccess)
		c.printf("  highest store sequence seen: %d\n", e.HighestStoreSequence)
	}
	c.printf("\n")
	if st.Recoverable {
		c.printf("recoverable:      yes; the key survives the loss of %s\n", client.Plural(uint(max(st.Tolerance, 0)), "realm"))
		c.printf("tries left:       %d across the realms\n", st.TriesLeft)
	} else {
		c.printf("recoverable:      NO: %s\n", printable(strings.TrimPrefix(fmt.Sprint(st.VersionErr), "client: ")))
	}
	if st.Bounds != nil {
		c.printf("guess bounds:     %s\n", st.Bounds.Sentence())
	}
	c.printf("set code:         %s\n", orNone(st.SetCode))
	for _, w := range st.Warnings {
		c.printf("WARNING: %s.\n", w.Text)
	}
	return nil
}

func versionStatusName(s protocol.VersionStatus) string {
	switch s {
	case protocol.VersionPending:
		return "pending"
	case protocol.VersionCommitted:
		return "committed"
	}
	return fmt.Sprintf("status %d", s)
}

func originName(o protocol.VersionOrigin) string {
	switch o {
	case protocol.OriginSession:
		return "put in a session"
	case protocol.OriginOpen:
		return "open registration"
	case protocol.OriginOverBurned:
		return "registered over a burned record"
	}
	return fmt.Sprintf("origin %d", o)
}

// errRealmMode refuses the single-vault commands that have no realm-set
// counterpart yet.
func errRealmMode(what string) error {
	return fmt.Errorf("%s is not available for a realm set yet (REALMS.md 13); `coffer realms` shows the set", what)
}

func realmNameList(rc *client.RealmsConfig) string {
	names := make([]string, len(rc.Set))
	for i, e := range rc.Set {
		names[i] = client.QuoteName(e.Name)
	}
	return strings.Join(names, ", ")
}

// operatorQuoted is the operator text in Go quotes, so that free text
// reads as one value inside a line.
func operatorQuoted(e *client.RealmEntry) string {
	if e.Operator == "" {
		return "(not given)"
	}
	return strconv.Quote(e.Operator)
}
