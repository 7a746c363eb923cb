package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"

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
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.vaultTarget(vc, cfg, path, prompt, func(ctx context.Context, pw []byte) error {
		var err error
		s, err = vc.Login(ctx, pw)
		c.save(cfg, path)
		return err
	}))
	if err != nil {
		return nil, err
	}
	c.reportRelease(s)
	return s, nil
}

func (c *cli) connect(ctx context.Context, cfg *client.Config, path string, insecure bool) (*client.Client, error) {
	if cfg.Mode != client.ModePassword {
		return nil, errors.New("this account keeps its key as a 64-digit key, not in a vault")
	}
	if cfg.Realms != nil {
		return nil, errRealmMode("this command")
	}
	vc, err := client.Connect(ctx, cfg, c.vaultOptions(insecure))
	// Saved also after a refusal: what the log taught (its view, the
	// revocations read) is kept; the vault's pin moves only on success.
	c.save(cfg, path)
	if err != nil {
		return nil, err
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
	force := fset.Bool("force", false, "replace existing files or folders named like the backup's top-level entries")
	ks := c.keySourceFlags(fset)
	rest, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("usage: coffer restore FILE [-C DIR] [--force]")
	}
	cfg, path, err := c.loadConfig()
	if errors.Is(err, client.ErrNoConfig) {
		cfg = nil // a 64-digit key restores without any configuration
	} else if err != nil {
		return err
	}
	// Look at the file before a vault login spends an attempt on it.
	f, err := os.Open(rest[0])
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := age.ExtractHeader(bufio.NewReader(f)); err != nil {
		return fmt.Errorf("%s is not a backup (an age file): %w", client.QuoteName(rest[0]), err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}

	ks.checkFile = rest[0]
	k, err := c.backupKey(ctx, cfg, path, ks)
	if err != nil {
		return err
	}
	defer k.Wipe()
	id, err := k.AgeIdentity()
	if err != nil {
		return err
	}
	bar := c.newProgress("restore", fi.Size())
	st, err := client.RestoreBackup(countingReader{ctx, f, bar}, id, *dir, &client.RestoreOptions{Force: *force})
	bar.Finish()
	if err != nil {
		return err
	}
	top := make([]string, len(st.Top))
	for i, name := range st.Top {
		top[i] = client.QuoteName(name)
	}
	c.warnf("Restored %d files (%s), %d folders, %d symlinks, %d hard links into %s: %s\n",
		st.Files, size(st.Bytes), st.Dirs, st.Symlinks, st.Links, client.QuoteName(*dir), strings.Join(top, ", "))
	return nil
}
