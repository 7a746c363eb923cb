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
	var excludes, excludeFiles stringList
	fset.Var(&excludes, "exclude", "leave out what `PATTERN` matches (repeatable)")
	fset.Var(&excludeFiles, "exclude-file", "leave out what the patterns in `FILE` match, one a line (repeatable)")
	dryRun := fset.Bool("dry-run", false, "list what would be backed up and left out; write nothing")
	jsonOut := fset.Bool("json", false, "print a JSON summary on standard output")
	paths, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 || (*out == "" && !*dryRun) {
		return usagef("needs PATH... and -o FILE (or --dry-run)")
	}
	if *jsonOut && *out == "-" && !*dryRun {
		return usagef("--json needs -o FILE: with -o - the backup itself is on standard output")
	}
	patterns := []string(excludes)
	for _, f := range excludeFiles {
		p, err := client.ReadExcludeFile(f)
		if err != nil {
			return fmt.Errorf("--exclude-file: %w", err)
		}
		patterns = append(patterns, p...)
	}
	exclude, err := client.ParseExcludes(patterns)
	if err != nil {
		return usagef("%s", printable(err.Error()))
	}
	if *dryRun {
		return c.backupDryRun(paths, exclude, *out, *jsonOut)
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
	total := client.TreeSize(paths, exclude)
	opts := &client.BackupOptions{Exclude: exclude}

	if *out == "-" {
		bar := c.newProgress("backup", total)
		st, err := c.writeBackup(ctxWriter{ctx, c.stdout}, rec, paths, opts, bar)
		if err != nil {
			return err
		}
		return c.backupSummary("(standard output)", "-", 0, st, cfg.AgeRecipient, nil, false)
	}
	if old, err := os.Lstat(*out); err == nil && !*force {
		return fmt.Errorf("%s exists (use --force to replace it)", client.QuoteName(*out))
	} else if err == nil {
		opts.Skip = append(opts.Skip, old) // an older backup inside what is backed up
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// What backups to this folder that were killed left behind.
	left := c.cleanLeftovers(client.BackupLeftovers, "backup", filepath.Dir(*out), true)
	// Written beside the target and renamed over it only when complete, so
	// that FILE is never a partial backup; locked while it exists, so that
	// another run's cleanup leaves it alone.
	tmp, err := client.CreatePartial(*out)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	defer tmp.Close()
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	opts.Skip = append(opts.Skip, fi)
	bar := c.newProgress("backup", total)
	st, err := c.writeBackup(ctxWriter{ctx, tmp}, rec, paths, opts, bar)
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if fi, err = tmp.Stat(); err != nil {
		return err
	}
	// Renamed while still locked, so that no cleanup takes the complete
	// file for a leftover.
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", client.QuoteName(*out), err)
	}
	return c.backupSummary(client.QuoteName(*out), *out, fi.Size(), st, cfg.AgeRecipient, left, *jsonOut)
}

func (c *cli) writeBackup(w io.Writer, rec age.Recipient, paths []string, opts *client.BackupOptions, bar *progressBar) (*client.BackupStats, error) {
	opts.Warn = func(msg string) {
		bar.Interrupt(func() { c.warnf("warning: %s\n", printable(msg)) })
	}
	if bar != nil {
		opts.Progress = bar.Add
	}
	st, err := client.WriteBackup(w, rec, paths, opts)
	bar.Finish()
	return st, err
}

// backupJSON is backup's --json summary (README.md, "JSON output").
type backupJSON struct {
	Command   string         `json:"command"`
	DryRun    bool           `json:"dry_run"`
	Output    string         `json:"output,omitempty"`
	Size      int64          `json:"size,omitempty"`
	Recipient string         `json:"recipient,omitempty"`
	Complete  bool           `json:"complete"`
	Files     int            `json:"files"`
	Dirs      int            `json:"dirs"`
	Symlinks  int            `json:"symlinks"`
	Bytes     int64          `json:"bytes"`
	Excluded  int            `json:"excluded"`
	LeftOutN  int            `json:"left_out_count"`
	LeftOut   []leftOutJSON  `json:"left_out"`
	Archive   int64          `json:"archive_bytes,omitempty"`
	Payload   int64          `json:"payload_bytes,omitempty"`
	Leftovers []jsonLeftover `json:"leftovers,omitempty"`
	Entries   *[]jsonEntry   `json:"entries,omitempty"` // dry runs
}

type leftOutJSON struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

func newBackupJSON(st *client.BackupStats) backupJSON {
	j := backupJSON{Command: "backup", Complete: st.Skipped == 0, Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks,
		Bytes: st.Bytes, Excluded: st.Excluded, LeftOutN: st.Skipped, LeftOut: []leftOutJSON{},
		Archive: st.Archive, Payload: st.Payload}
	for _, l := range st.LeftOut {
		j.LeftOut = append(j.LeftOut, leftOutJSON{l.Path, l.Reason})
	}
	return j
}

// backupSummary tells what the backup holds (on standard error, or as JSON
// on standard output), and fails with exit status 3 if it left entries
// out.
func (c *cli) backupSummary(shown, out string, fileSize int64, st *client.BackupStats, recipient string, left []jsonLeftover, asJSON bool) error {
	if asJSON {
		j := newBackupJSON(st)
		j.Output, j.Size, j.Recipient, j.Leftovers = out, fileSize, recipient, left
		if err := c.printJSON(j); err != nil {
			return err
		}
	} else {
		c.warnf("Backed up %d files (%s), %d folders, %d symlinks to %s, encrypted to %s.\n",
			st.Files, size(st.Bytes), st.Dirs, st.Symlinks, shown, recipient)
		if st.Excluded > 0 {
			c.warnf("%d excluded.\n", st.Excluded)
		}
	}
	return incomplete(st, false)
}

// incomplete is the error of a backup (or dry run) that left entries out.
func incomplete(st *client.BackupStats, dryRun bool) error {
	if st.Skipped == 0 {
		return nil
	}
	is := "is"
	if dryRun {
		is = "would be"
	}
	return errExit{exitIncomplete, fmt.Sprintf("the backup %s incomplete: %d left out (see the warnings above; exit status 3)", is, st.Skipped)}
}

// backupDryRun lists what a backup would hold (standard output, as ls
// does), exclude and leave out, reading no content and writing nothing.
func (c *cli) backupDryRun(paths []string, exclude *client.Excludes, out string, asJSON bool) error {
	var entries []jsonEntry
	opts := &client.BackupOptions{
		Exclude: exclude,
		Warn:    func(msg string) { c.warnf("warning: %s\n", printable(msg)) },
		Entry: func(e client.Entry) {
			if asJSON {
				entries = append(entries, toJSONEntry(e))
			} else {
				c.printf("%s\n", listLine(e))
			}
		},
		Excluded: func(disk, pattern string) {
			why := "the backup's own output"
			if pattern != "" {
				why = "--exclude " + client.QuoteName(pattern)
			}
			c.warnf("excluded %s (%s)\n", client.QuoteName(disk), why)
		},
	}
	if out != "" && out != "-" {
		if fi, err := os.Lstat(out); err == nil {
			opts.Skip = append(opts.Skip, fi)
		}
	}
	st, err := client.ScanBackup(paths, opts)
	if err != nil {
		return err
	}
	if asJSON {
		j := newBackupJSON(st)
		if entries == nil {
			entries = []jsonEntry{}
		}
		j.DryRun, j.Entries, j.Output = true, &entries, out
		if err := c.printJSON(j); err != nil {
			return err
		}
	} else {
		c.warnf("Dry run: would back up %d files (%s), %d folders, %d symlinks; %d excluded, %d left out. Nothing was written.\n",
			st.Files, size(st.Bytes), st.Dirs, st.Symlinks, st.Excluded, st.Skipped)
	}
	return incomplete(st, true)
}
