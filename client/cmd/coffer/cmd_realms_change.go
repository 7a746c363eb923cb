package main

// Realm mode's changes (protocol/REALMS.md 10, 13): `coffer password change
// [--resume] [--force]`, `coffer delete`, `coffer realms repair --realms
// FILE` and `coffer key rotate`. Each saves the configuration at the
// library's checkpoints (before the first put, before the first commit), so
// that a cut leaves the device knowing what it started, and prints where the
// change stands in REALMS.md 14's words.

import (
	"context"
	"errors"
	"strings"

	"github.com/cofferhsm/coffer/client"
)

// realmSetFor opens cfg's realm set with checkpoints that save it to path.
func (c *cli) realmSetFor(cfg *client.Config, path string, insecure, force bool) (*client.RealmSet, error) {
	opts := c.realmOptions(path, insecure, force)
	opts.Checkpoint = func() error { return cfg.Save(path) }
	return client.OpenRealmSet(cfg, opts)
}

// printChange prints a change's report line by line, each made printable.
func (c *cli) printChange(rep *client.ChangeReport) {
	if rep == nil {
		return
	}
	for _, line := range strings.Split(rep.Summary(), "\n") {
		c.printf("%s\n", printable(line))
	}
}

// printRecoveryChange says what a recovery did about an unfinished change
// it found and carried forward (C6), on stderr: restore may write data to
// stdout.
func (c *cli) printRecoveryChange(rec *client.Recovery) {
	if rec.Change != nil {
		for _, line := range strings.Split(rec.Change.Summary(), "\n") {
			c.warnf("%s\n", printable(line))
		}
	}
	if rec.ChangeErr != nil {
		c.warnf("%s\n", printable(strings.TrimPrefix(rec.ChangeErr.Error(), "client: ")))
	}
}

// unfinishedNotice is what realm commands say while a change or delete is
// unfinished (C5).
func (c *cli) unfinishedNotice(cfg *client.Config) {
	if cfg.Realms == nil || cfg.Realms.Change == nil {
		return
	}
	if s := cfg.Realms.DeleteStatus(); s != "" {
		c.warnf("%s\n", s)
		return
	}
	if cfg.Realms.Change.Kind == "register" {
		c.warnf("the registration of your key is unfinished on this device: do not back up with this configuration until " +
			"`coffer password change --resume` finishes it\n")
		return
	}
	c.warnf("an unfinished %s of your key is on this device: the old password may still open it at some realms; "+
		"run `coffer password change --resume` to finish\n", cfg.Realms.Change.Kind)
}

// realmPasswordChange is `coffer password change [--resume] [--force]` for
// a realm set: the current password recovers K (any version held by t
// realms: the old password, or the new one of a change not yet finished),
// any unfinished change is finished first, then the new version is put and
// committed under C2.
func (c *cli) realmPasswordChange(ctx context.Context, cfg *client.Config, path string, ks *keySource, newFile string, resume, force bool) error {
	rs, err := c.realmSetFor(cfg, path, ks.insecure, force)
	if err != nil {
		return err
	}
	prompt := "Current password"
	if resume {
		prompt = "Password (the old one or the new one)"
	}
	var newPW []byte
	defer func() { clear(newPW) }()
	return c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.realmTarget(rs, cfg, path, prompt, func(ctx context.Context, pw []byte) error {
		if !resume && newPW == nil {
			// Asked once, after the current password, and kept if that
			// one is wrong and asked again.
			var err error
			if newPW, err = c.secret(newFile, "COFFER_NEW_PASSWORD", "New password", true); err != nil {
				return err
			}
		}
		rep, err := rs.ChangePassword(ctx, pw, newPW)
		c.save(cfg, path)
		c.printChange(rep)
		return err
	}))
}

// realmDelete is `coffer delete` for a realm set (13.2).
func (c *cli) realmDelete(ctx context.Context, cfg *client.Config, path string, ks *keySource, yes bool) error {
	const warning = "This erases this account's backup key from every realm of the set for ever. Backups made so far can then be\n" +
		"opened only with an age identity exported before (coffer key export-age)."
	if err := c.confirmDelete(warning, yes); err != nil {
		return err
	}
	rs, err := c.realmSetFor(cfg, path, ks.insecure, false)
	if err != nil {
		return err
	}
	var rep *client.ChangeReport
	tried, noQuorum := false, false
	try := func(ctx context.Context, pw []byte) error {
		tried = true
		var err error
		rep, err = rs.Delete(ctx, pw)
		c.save(cfg, path)
		return err
	}
	// Delete recovers K first and changes nothing before the password is
	// judged: a wrong one is asked again on a terminal. But a delete cut
	// short (here or on another device) that left fewer than t realms
	// holding a version evaluates no password: Delete then only reports
	// where the key may still be. The count before the first try stops
	// there, so that case gets the one try it always had.
	target := c.realmTarget(rs, cfg, path, "Password", try)
	count := target.count
	target.count = func(ctx context.Context) (*triesCount, error) {
		n, err := count(ctx)
		var qe *client.QuorumError
		noQuorum = !tried && errors.As(err, &qe)
		return n, err
	}
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", target)
	if noQuorum {
		pw, perr := c.secret(ks.pwFile, "COFFER_PASSWORD", "Password", false)
		if perr != nil {
			return perr
		}
		defer clear(pw)
		err = try(ctx, pw)
	}
	if err != nil {
		return err
	}
	c.printChange(rep)
	if !rep.Erased {
		return errors.New("the delete is not finished: some realms may still hold the key")
	}
	return nil
}

func (c *cli) confirmDelete(warning string, yes bool) error {
	if !yes && c.ask != nil {
		c.warnf("%s\n", warning)
	}
	return c.confirmWord(yes, "delete", strings.ReplaceAll(warning, "\n", " ")+" Confirm with --yes.", "not confirmed; nothing was deleted")
}

// cmdRealmsRepair is `coffer realms repair --realms FILE [--threshold t]
// [--limit N] [--force]` (13.3): FILE lists the new set (realms already
// configured are named as before; new ones need server, token and
// provisioning key).
func (c *cli) cmdRealmsRepair(ctx context.Context, args []string) error {
	fset := c.flags("realms repair")
	ks := c.keySourceFlags(fset)
	file := fset.String("realms", "", "JSON list of the new set's realms")
	threshold := fset.Int("threshold", 0, "t of the new set (default: the current one if it fits, else a majority)")
	limit := fset.Uint("limit", 0, "the guess limit for the new set (default: the current one)")
	force := fset.Bool("force", false, "commit once t realms of the new set hold it, at a lower tolerance")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	if *limit == 1 {
		c.warnLimitOne()
	}
	if *file == "" {
		return usagef("realms repair needs --realms FILE, the new set")
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Realms == nil {
		return errors.New("this account has no realm set (coffer init --realms FILE makes one)")
	}
	set, err := readRealmsFile(*file)
	if err != nil {
		return err
	}
	for _, e := range set {
		if realmEntry(cfg.Realms, e.Name).Server == "" {
			c.warnPlainHTTP(e.Server)
		}
	}
	rs, err := c.realmSetFor(cfg, path, ks.insecure, *force)
	if err != nil {
		return err
	}
	// Repair recovers K first: a wrong password changes nothing and is
	// asked again on a terminal.
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.realmTarget(rs, cfg, path, "Password", func(ctx context.Context, pw []byte) error {
		rep, err := rs.Repair(ctx, pw, set, *threshold, *limit)
		c.save(cfg, path)
		c.printChange(rep)
		return err
	}))
	if err != nil {
		return err
	}
	c.printf("the set is now %s, %d of %d; configure the same set on your other devices (coffer realms repair there too, or a new init with the set code)\n",
		realmNameList(cfg.Realms), cfg.Realms.Threshold, len(cfg.Realms.Set))
	return nil
}

// cmdKeyRotate is `coffer key rotate [--force]` (13.4).
func (c *cli) cmdKeyRotate(ctx context.Context, args []string) error {
	fset := c.flags("key rotate")
	ks := c.keySourceFlags(fset)
	force := fset.Bool("force", false, "commit once t realms hold it, at a lower tolerance")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Realms == nil {
		return errors.New("key rotation is for a realm set (coffer init --realms FILE)")
	}
	rs, err := c.realmSetFor(cfg, path, ks.insecure, *force)
	if err != nil {
		return err
	}
	// RotateKey recovers K first: a wrong password changes nothing and is
	// asked again on a terminal.
	var rep *client.ChangeReport
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.realmTarget(rs, cfg, path, "Password", func(ctx context.Context, pw []byte) error {
		var next *client.BackupKey
		var err error
		rep, next, err = rs.RotateKey(ctx, pw)
		if next != nil {
			next.Wipe()
		}
		c.save(cfg, path)
		c.printChange(rep)
		return err
	}))
	if err != nil {
		return err
	}
	if rep.CommitSent {
		c.printf("new backup key in use: new backups go to %s\n", cfg.AgeRecipient)
		c.printf("new set code: %s (keep it beside your password hint; it replaces the old one)\n", rep.SetCode)
		c.printf("backups made before stay readable by whoever recovers the OLD key until you delete them: make new backups, then delete the old ones\n")
	}
	return nil
}
