package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/client"
)

func (c *cli) cmdBackup(ctx context.Context, args []string) error {
	fset := c.flags("backup")
	out := fset.String("o", "", "the backup file to write (\"-\": standard output)")
	force := fset.Bool("force", false, "replace FILE if it exists")
	paths, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 || *out == "" {
		return usagef("needs PATH... and -o FILE")
	}
	cfg, _, err := c.loadConfig()
	if err != nil {
		return err
	}
	if rc := cfg.Realms; rc != nil && rc.Change != nil && rc.Change.Kind == "register" && !rc.Change.CommitSent {
		// Fewer than t realms may hold the key's only version: a backup to
		// it now might never be opened.
		return errors.New("the registration of this account's key at its realms is not committed yet, so the key may not be recoverable: " +
			"no backup is made until `coffer password change --resume` finishes it")
	}
	if rc := cfg.Realms; rc != nil && rc.Version == nil {
		// No version: the key was deleted, or a burn cleared an abandoned
		// first registration (REALMS.md C1, 13.3). No realm holds the key
		// of this recipient.
		return errors.New("this account's realm set holds no registered key (deleted, or a cut first registration was burned): " +
			"no backup is made; register a key first (`coffer init --realms`)")
	}
	rec, err := client.ParseRecipient(cfg.AgeRecipient)
	if err != nil {
		return err
	}
	total := client.TreeSize(paths)

	if *out == "-" {
		bar := c.newProgress("backup", total)
		st, err := c.writeBackup(ctxWriter{ctx, c.stdout}, rec, paths, nil, bar)
		if err != nil {
			return err
		}
		c.backupSummary("(standard output)", st, cfg.AgeRecipient)
		return nil
	}
	var skip []os.FileInfo
	if old, err := os.Lstat(*out); err == nil && !*force {
		return fmt.Errorf("%s exists (use --force to replace it)", client.QuoteName(*out))
	} else if err == nil {
		skip = append(skip, old) // an older backup inside what is backed up
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Written beside the target and renamed over it only when complete, so
	// that FILE is never a partial backup.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".partial-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	defer tmp.Close()
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	bar := c.newProgress("backup", total)
	st, err := c.writeBackup(ctxWriter{ctx, tmp}, rec, paths, append(skip, fi), bar)
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	c.backupSummary(client.QuoteName(*out), st, cfg.AgeRecipient)
	return nil
}

func (c *cli) writeBackup(w io.Writer, rec age.Recipient, paths []string, skip []os.FileInfo, bar *progressBar) (*client.BackupStats, error) {
	opts := &client.BackupOptions{
		Skip: skip,
		Warn: func(msg string) {
			if bar != nil {
				fmt.Fprintln(c.stderr)
			}
			c.warnf("warning: %s\n", printable(msg))
		},
	}
	if bar != nil {
		opts.Progress = bar.Add
	}
	st, err := client.WriteBackup(w, rec, paths, opts)
	bar.Finish()
	return st, err
}

func (c *cli) backupSummary(out string, st *client.BackupStats, recipient string) {
	c.warnf("Backed up %d files (%s), %d folders, %d symlinks to %s, encrypted to %s.\n",
		st.Files, size(st.Bytes), st.Dirs, st.Symlinks, out, recipient)
	if st.Skipped > 0 {
		c.warnf("%d left out: see the warnings above.\n", st.Skipped)
	}
}
