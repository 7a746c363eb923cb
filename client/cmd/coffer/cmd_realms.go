package main

// Realm mode (protocol/REALMS.md): the key behind a password at t of n
// vaults, each behind its own cofferd and operator. This file: recovery for
// restore and key export-age, `coffer realms` (the set's health), and what
// the realm commands print; cmd_init_realms.go registers.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
)

func (c *cli) realmOptions(path string, insecure, force bool) client.RealmOptions {
	// A lying realm's evidence goes beside the configuration, not into the
	// folder a restore writes.
	return client.RealmOptions{HTTPClient: c.httpClient, AllowInsecure: insecure, AllowUnlogged: insecure, LogSource: c.logSource,
		Notice: c.notice, Force: force, EvidenceDir: filepath.Dir(path)}
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
	opts := c.realmOptions(path, ks.insecure, false)
	if cfg.Realms.Anchor == "" && ks.checkFile != "" {
		// No anchor pinned: the backup being restored is what tells the
		// user's version from one the servers' operators made.
		var err error
		if opts.CheckKey, err = backupCheck(ks.checkFile); err != nil {
			return nil, err
		}
	}
	opts.Checkpoint = func() error { return cfg.Save(path) } // C3 while finishing a change
	rs, err := client.OpenRealmSet(cfg, opts)
	if err != nil {
		return nil, err
	}
	c.unfinishedNotice(cfg)
	var rec *client.Recovery
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.realmTarget(rs, cfg, path, "Password", func(ctx context.Context, pw []byte) error {
		var err error
		rec, err = rs.Recover(ctx, pw)
		c.save(cfg, path)
		return err
	}))
	if err != nil {
		return nil, err
	}
	c.printRecovery(rec)
	c.printRecoveryChange(rec)
	k := rec.Key
	if r, err := k.AgeRecipient(); err == nil && r != cfg.AgeRecipient {
		c.warnf("warning: the realms released a key whose recipient is %s, but this account backs up to %s\n", r, cfg.AgeRecipient)
	}
	return k, nil
}

// cmdRealms shows the set's health (REALMS.md 13.3). It counts nothing.
func (c *cli) cmdRealms(ctx context.Context, args []string) error {
	fset := c.flags("realms")
	insecure := fset.Bool("insecure", false, insecureHelp)
	if err := parseNoArgs(fset, args); err != nil {
		return err
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
	c.unfinishedNotice(cfg)
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
			if cfg.Log != nil {
				c.printf("  in the log:     %s\n", loggedText(v.Logged))
			}
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

// printRecovery prints a recovery's per-realm report and the figures of
// REALMS.md 11 step 8, line by line (each made printable).
func (c *cli) printRecovery(rec *client.Recovery) {
	for _, line := range strings.Split(strings.TrimRight(rec.Summary(), "\n"), "\n") {
		c.warnf("%s\n", printable(line))
	}
}
