package main

// `coffer init --realms FILE`: register a new key at a realm set, or, with
// --existing --set-code, set up a new device of one.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"

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
	ca        string // --ca FILE, absolute
	file      string
	threshold int
	limit     uint
	insecure  bool
	force     bool
	pwFile    string
	setCode   string
	backup    string // a backup the recovered key must open (5.6), instead of the set code
	logPolicy []byte // --log-policy FILE's text, or nil
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
	// The library saves the configuration before the first registration
	// is sent and before the first commit (C1, C3): a cut leaves a device
	// that knows the version and can finish it.
	rs, err := c.realmSetFor(cfg, path, rf.insecure, rf.force)
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
		// A burned record (tombstone) takes an open registration (V1):
		// what `coffer realms burn` leaves after clearing a cut one.
		if rr.State != protocol.RealmNoRecord && rr.State != protocol.RealmLocked {
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
	if !report.Committed || cfg.Realms.Change != nil {
		return fmt.Errorf("%s. Do not make backups with this configuration yet (%s): `coffer password change --resume` finishes the registration once the realms are back",
			report.Summary(), client.QuoteName(path))
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
	cfg := &client.Config{Version: client.ConfigVersion, Mode: client.ModePassword, AllowInsecure: rf.insecure, CA: rf.ca,
		Realms: &client.RealmsConfig{Threshold: t, Set: set}}
	if rf.logPolicy != nil {
		if _, err := cfg.PinLogPolicy(rf.logPolicy); err != nil {
			return nil, err
		}
	}
	return cfg, nil
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
	if rf.setCode == "" && rf.backup == "" {
		// No "warn and go on" (REALMS.md 5.6): each try would be one online
		// guess at a version the servers' operators made.
		return usagef("a new device of a realm set needs --set-code: the code init printed on the first device (it tells your key's versions from ones the servers' operators made), " +
			"or --backup FILE: one of your backups, which the recovered key must open")
	}
	for _, e := range cfg.Realms.Set {
		c.warnPlainHTTP(e.Server)
	}
	if err := checkWritable(path); err != nil {
		return err
	}
	opts := c.realmOptions(path, rf.insecure, false)
	opts.SetCode = rf.setCode
	if rf.backup != "" {
		if opts.CheckKey, err = backupCheck(rf.backup); err != nil {
			return err
		}
	}
	rs, err := client.OpenRealmSet(cfg, opts) // checks the set's shape
	if err != nil {
		return usagef("%v", strings.TrimPrefix(err.Error(), "client: "))
	}
	var rec *client.Recovery
	err = c.withPassword(ctx, rf.pwFile, "COFFER_PASSWORD", c.realmTarget(rs, cfg, "", "Password", func(ctx context.Context, pw []byte) error {
		var err error
		rec, err = rs.Recover(ctx, pw)
		return err
	}))
	if err != nil {
		return err
	}
	defer rec.Key.Wipe()
	c.printRecovery(rec)
	if cfg.AgeRecipient, err = rec.Key.AgeRecipient(); err != nil {
		return err
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	c.printf("Recovered this account's backup key from the realms; this device now trusts the set's anchor (set code %s).\n", cfg.Realms.SetCode())
	if rf.setCode == "" {
		c.printf("The key opened %s, so this is your key's version.\n", client.QuoteName(rf.backup))
	}
	c.printf("Backups are encrypted to %s\nConfiguration: %s\n", cfg.AgeRecipient, client.QuoteName(path))
	return nil
}

// maxBackupHeader is how much of a backup is read to check a key against
// it: the age header and the payload's nonce, far less for coffer's one
// recipient.
const maxBackupHeader = 64 << 10

// backupCheck reads the start of the backup at path and returns the check
// a recovered key must pass on a device without an anchor (REALMS.md 5.6).
func backupCheck(path string) (func(*client.BackupKey) error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head, err := io.ReadAll(io.LimitReader(f, maxBackupHeader))
	if err != nil {
		return nil, err
	}
	if _, err := age.ExtractHeader(bufio.NewReader(bytes.NewReader(head))); err != nil {
		return nil, fmt.Errorf("%s is not a backup (an age file): %w", client.QuoteName(path), err)
	}
	return client.KeyOpensBackup(head), nil
}
