package main

import (
	"context"
	"errors"
	"strings"

	"github.com/cofferhsm/coffer/client"
)

// keySource are the flags of commands that need K.
type keySource struct {
	key      keyFlags
	pwFile   string
	insecure bool
	// checkFile is the backup being restored: on a realm set whose device
	// pinned no anchor, the recovered key must open it (REALMS.md 5.6).
	checkFile string
}

func (c *cli) keySourceFlags(fset interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
}) *keySource {
	ks := &keySource{}
	fset.StringVar(&ks.key.text, "key", "", "the 64-digit key (else COFFER_KEY, or asked)")
	fset.StringVar(&ks.key.file, "key-file", "", "read the 64-digit key from FILE")
	fset.StringVar(&ks.pwFile, "password-file", "", "read the vault password from FILE (else COFFER_PASSWORD, or asked)")
	fset.BoolVar(&ks.insecure, "insecure", false, insecureHelp)
	return ks
}

// backupKey gets K: from a typed 64-digit key if one is given or the
// account keeps it that way (or there is no configuration), otherwise by
// logging in to the vault. cfg may be nil. It saves what the vault login
// taught the configuration, even when the login failed.
func (c *cli) backupKey(ctx context.Context, cfg *client.Config, path string, ks *keySource) (*client.BackupKey, error) {
	if ks.key.given(c) || cfg == nil || cfg.Mode == client.ModeKey {
		k, err := c.typedKey(ks.key)
		if err != nil {
			return nil, err
		}
		if cfg != nil {
			if r, err := k.AgeRecipient(); err == nil && r != cfg.AgeRecipient {
				c.warnf("warning: this key's recipient is %s, but this account backs up to %s\n", r, cfg.AgeRecipient)
			}
		}
		return k, nil
	}
	if cfg.Realms != nil {
		return c.recoverRealmKey(ctx, cfg, path, ks)
	}
	s, err := c.login(ctx, cfg, path, ks, "Vault password")
	if err != nil {
		return nil, err
	}
	defer s.Close(ctx)
	k, err := client.BackupKeyFromBytes(s.BackupKey().Bytes())
	if err != nil {
		return nil, err
	}
	if r, err := k.AgeRecipient(); err == nil && r != cfg.AgeRecipient {
		c.warnf("warning: the vault released a key whose recipient is %s, but this account backs up to %s\n", r, cfg.AgeRecipient)
	}
	return k, nil
}

// login connects and logs in, saving the configuration's trust state
// afterwards whatever happened. On a terminal a wrong password is asked
// again (withPassword).
func (c *cli) login(ctx context.Context, cfg *client.Config, path string, ks *keySource, prompt string) (*client.Session, error) {
	vc, err := c.connect(ctx, cfg, path, ks.insecure)
	if err != nil {
		return nil, err
	}
	var s *client.Session
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.vaultTarget(vc.UserStatus, cfg, path, prompt, func(ctx context.Context, pw []byte) error {
		var err error
		s, err = vc.Login(ctx, pw)
		c.save(cfg, path)
		return err
	}))
	if err != nil {
		return nil, rollbackAdvice(err)
	}
	c.reportRelease(s)
	return s, nil
}

func (c *cli) connect(ctx context.Context, cfg *client.Config, path string, insecure bool) (*client.Client, error) {
	return c.connectWith(ctx, cfg, path, c.vaultOptions(insecure))
}

func (c *cli) connectWith(ctx context.Context, cfg *client.Config, path string, opts client.Options) (*client.Client, error) {
	if cfg.Mode != client.ModePassword {
		return nil, errors.New("this account keeps its key as a 64-digit key, not in a vault")
	}
	if cfg.Realms != nil {
		return nil, errRealmMode("this command")
	}
	vc, err := client.Connect(ctx, cfg, opts)
	// Saved also after a refusal: what the log taught (its view, the
	// revocations read) is kept; the vault's pin moves only on success.
	c.save(cfg, path)
	if err != nil {
		// Connect checks the store sequence of the vault's signed status
		// (since the firmware binding): say what to do about a rollback
		// here too, not only after a login.
		return nil, rollbackAdvice(err)
	}
	return vc, nil
}

func (c *cli) save(cfg *client.Config, path string) {
	if err := cfg.Save(path); err != nil {
		c.warnf("warning: could not update %s: %s\n", client.QuoteName(path), printable(err.Error()))
	}
}

func (c *cli) cmdRestore(ctx context.Context, args []string) error {
	fset := c.flags("restore")
	dir := fset.String("C", ".", "restore into `DIR`")
	force := fset.Bool("force", false, "replace existing files or folders named like what the restore puts in place")
	dryRun := fset.Bool("dry-run", false, "list what would be restored and replaced; write nothing")
	jsonOut := fset.Bool("json", false, "print a JSON summary on standard output")
	ks := c.keySourceFlags(fset)
	rest, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(rest) < 1 {
		return usagef("needs a backup FILE")
	}
	// What restores into DIR that were killed left: plaintext.
	left := c.cleanLeftovers(client.RestoreLeftovers, "restore", *dir, !*dryRun)

	f, fsize, id, wipe, err := c.backupIdentity(ctx, rest[0], ks)
	if err != nil {
		return err
	}
	defer f.Close()
	defer wipe()
	var entries []client.Entry
	opts := &client.RestoreOptions{Force: *force, Paths: rest[1:], DryRun: *dryRun}
	if *dryRun {
		opts.Entry = func(e client.Entry) { entries = append(entries, e) }
	}
	bar := c.newProgress("restore", fsize)
	st, err := client.RestoreBackup(countingReader{ctx, f, bar}, id, *dir, opts)
	bar.Finish()
	if err != nil {
		return err
	}
	if *jsonOut {
		j := restoreJSON{Command: "restore", DryRun: *dryRun, File: rest[0], Into: *dir, Files: st.Files, Dirs: st.Dirs,
			Symlinks: st.Symlinks, HardLinks: st.Links, Bytes: st.Bytes, Restored: st.Top, Replaced: st.Replaced,
			Leftovers: left}
		if j.Restored == nil {
			j.Restored = []string{}
		}
		if j.Replaced == nil {
			j.Replaced = []string{}
		}
		if *dryRun {
			list := []jsonEntry{}
			for _, e := range entries {
				list = append(list, toJSONEntry(e))
			}
			j.Entries = &list
		}
		return c.printJSON(j)
	}
	top := make([]string, len(st.Top))
	for i, name := range st.Top {
		top[i] = client.QuoteName(name)
	}
	if *dryRun {
		for _, e := range entries {
			c.printf("%s\n", listLine(e))
		}
		c.warnf("Dry run: would restore %d files (%s), %d folders, %d symlinks, %d hard links into %s: %s",
			st.Files, size(st.Bytes), st.Dirs, st.Symlinks, st.Links, client.QuoteName(*dir), strings.Join(top, ", "))
		if len(st.Replaced) > 0 {
			c.warnf("; would replace %s", quoteAll(st.Replaced))
		}
		c.warnf(". Nothing was written.\n")
		return nil
	}
	c.warnf("Restored %d files (%s), %d folders, %d symlinks, %d hard links into %s: %s\n",
		st.Files, size(st.Bytes), st.Dirs, st.Symlinks, st.Links, client.QuoteName(*dir), strings.Join(top, ", "))
	if len(st.Replaced) > 0 {
		c.warnf("Replaced %s.\n", quoteAll(st.Replaced))
	}
	return nil
}

// restoreJSON is restore's --json summary (README.md, "JSON output").
type restoreJSON struct {
	Command   string         `json:"command"`
	DryRun    bool           `json:"dry_run"`
	File      string         `json:"file"`
	Into      string         `json:"into"`
	Files     int            `json:"files"`
	Dirs      int            `json:"dirs"`
	Symlinks  int            `json:"symlinks"`
	HardLinks int            `json:"hard_links"`
	Bytes     int64          `json:"bytes"`
	Restored  []string       `json:"restored"`
	Replaced  []string       `json:"replaced"`
	Leftovers []jsonLeftover `json:"leftovers,omitempty"`
	Entries   *[]jsonEntry   `json:"entries,omitempty"` // dry runs
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = client.QuoteName(n)
	}
	return strings.Join(q, ", ")
}
