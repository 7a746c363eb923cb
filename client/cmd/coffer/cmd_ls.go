package main

import (
	"context"

	"github.com/cofferhsm/coffer/client"
)

// cmdLs lists a backup's entries without restoring anything. It reads and
// authenticates the whole file first, as a restore does, and lists
// nothing from a file that fails.
func (c *cli) cmdLs(ctx context.Context, args []string) error {
	var entries []client.Entry
	file, st, jsonOut, err := c.readArchive(ctx, "ls", "print the entries and a summary as one JSON object on standard output", args,
		func(e client.Entry) { entries = append(entries, e) })
	if err != nil {
		return err
	}
	if jsonOut {
		j := newArchiveJSON("ls", file, st)
		list := make([]jsonEntry, 0, len(entries))
		for _, e := range entries {
			list = append(list, toJSONEntry(e))
		}
		j.Entries = &list
		return c.printJSON(j)
	}
	for _, e := range entries {
		c.printf("%s\n", listLine(e))
	}
	return nil
}

// readArchive is what ls and verify share: their flags (--json, described
// by jsonUsage, and the key's), one backup FILE, read to its end and
// authenticated as a restore reads it, each entry given to each (nil: none).
// It returns the FILE argument, what the read counted and --json.
func (c *cli) readArchive(ctx context.Context, cmd, jsonUsage string, args []string, each func(client.Entry)) (string, *client.RestoreStats, bool, error) {
	fset := c.flags(cmd)
	jsonOut := fset.Bool("json", false, jsonUsage)
	ks := c.keySourceFlags(fset)
	rest, err := parse(fset, args)
	if err != nil {
		return "", nil, false, err
	}
	if len(rest) != 1 {
		return "", nil, false, usagef("needs one backup FILE")
	}
	f, fsize, id, wipe, err := c.backupIdentity(ctx, rest[0], ks)
	if err != nil {
		return "", nil, false, err
	}
	defer f.Close()
	defer wipe()
	bar := c.newProgress(cmd, fsize)
	st, err := client.ReadBackup(countingReader{ctx, f, bar}, id, each)
	bar.Finish()
	return rest[0], st, *jsonOut, err
}

// archiveJSON is the --json summary of ls and verify (README.md, "JSON
// output").
type archiveJSON struct {
	Command   string       `json:"command"`
	File      string       `json:"file"`
	OK        bool         `json:"ok"`
	Files     int          `json:"files"`
	Dirs      int          `json:"dirs"`
	Symlinks  int          `json:"symlinks"`
	HardLinks int          `json:"hard_links"`
	Bytes     int64        `json:"bytes"`
	Archive   int64        `json:"archive_bytes"`
	Payload   int64        `json:"payload_bytes"`
	Padded    bool         `json:"padded"`
	Entries   *[]jsonEntry `json:"entries,omitempty"` // ls
}

func newArchiveJSON(cmd, file string, st *client.RestoreStats) archiveJSON {
	return archiveJSON{Command: cmd, File: file, OK: true, Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks,
		HardLinks: st.Links, Bytes: st.Bytes, Archive: st.Archive, Payload: st.Payload,
		Padded: st.Payload == client.PadmeLength(st.Archive)}
}
