package main

// What backup, restore, ls and verify share: the exit status of an
// incomplete backup, opening a backup and getting its key, the listing of
// entries, JSON summaries, and the cleanup of what killed runs left.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/client"
)

// exitIncomplete is the exit status of a backup that left entries out
// against the user's wish (as restic's for an incomplete snapshot).
const exitIncomplete = 3

// errExit ends the command with its own exit status, saying msg.
type errExit struct {
	code int
	msg  string
}

func (e errExit) Error() string { return e.msg }

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ", ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// backupIdentity opens the backup file and gets the identity that opens
// it, as restore does: from the 64-digit key, or the password (the vault,
// or t realms of a realm set). The file is looked at first, so that no
// vault attempt is spent on something that is not a backup. The caller
// closes f and calls wipe.
func (c *cli) backupIdentity(ctx context.Context, file string, ks *keySource) (f *os.File, size int64, id age.Identity, wipe func(), err error) {
	cfg, path, err := c.loadConfig()
	if errors.Is(err, client.ErrNoConfig) {
		cfg = nil // a 64-digit key opens backups without any configuration
	} else if err != nil {
		return nil, 0, nil, nil, err
	}
	f, err = os.Open(file)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if _, err := age.ExtractHeader(bufio.NewReader(f)); err != nil {
		return nil, 0, nil, nil, fmt.Errorf("%s is not a backup (an age file): %w", client.QuoteName(file), err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return nil, 0, nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, nil, nil, err
	}
	ks.checkFile = file
	k, err := c.backupKey(ctx, cfg, path, ks)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	id, err = k.AgeIdentity()
	if err != nil {
		k.Wipe()
		return nil, 0, nil, nil, err
	}
	return f, fi.Size(), id, k.Wipe, nil
}

// listLine is one entry as ls and the dry runs show it: type and
// permission bits, size, modification time, name (and a link's target).
func listLine(e client.Entry) string {
	line := fmt.Sprintf("%c%s %12d %s %s", byte(e.Type), e.Mode.Perm().String()[1:], e.Size,
		e.ModTime.Local().Format("2006-01-02 15:04"), client.QuoteName(e.Name))
	switch e.Type {
	case client.TypeSymlink:
		line += " -> " + client.QuoteName(e.Target)
	case client.TypeLink:
		line += " link to " + client.QuoteName(e.Target)
	}
	return line
}

// jsonEntry is an entry in --json output (README.md, "JSON output").
type jsonEntry struct {
	Type   string `json:"type"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime"`
	Path   string `json:"path"`
	Target string `json:"target,omitempty"`
}

func toJSONEntry(e client.Entry) jsonEntry {
	return jsonEntry{Type: e.Type.String(), Mode: fmt.Sprintf("%04o", e.Mode.Perm()), Size: e.Size,
		MTime: e.ModTime.Unix(), Path: e.Name, Target: e.Target}
}

// jsonLeftover is a leftover of a killed run, in --json output.
type jsonLeftover struct {
	Path    string `json:"path"`
	Bytes   int64  `json:"bytes"`
	Removed bool   `json:"removed"`
	Held    bool   `json:"held"`
}

// printJSON writes v as one JSON object on a line of standard output.
// JSON escapes control characters and replaces bytes that are not UTF-8;
// every other character that is not printable (format characters such as
// bidirectional overrides) is escaped too, as \uXXXX, so that names in the
// output cannot drive a terminal it is shown on. They can only be inside
// strings: the rest of the output is ASCII.
func (c *cli) printJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	var out []byte
	for _, r := range buf.String() {
		if r < utf8.RuneSelf || strconv.IsPrint(r) {
			out = utf8.AppendRune(out, r)
			continue
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	_, err := c.stdout.Write(out)
	return err
}

// cleanLeftovers finds, in dir, what killed backups or restores (what)
// left, says so, and with remove removes those no running coffer holds.
func (c *cli) cleanLeftovers(find func(string, bool) ([]client.Leftover, error), what, dir string, remove bool) []jsonLeftover {
	found, err := find(dir, remove)
	if err != nil {
		c.warnf("warning: could not look for what killed runs left in %s: %s\n", client.QuoteName(dir), printable(err.Error()))
		return nil
	}
	var out []jsonLeftover
	for _, l := range found {
		name := client.QuoteName(l.Path)
		switch {
		case l.Removed:
			c.warnf("Removed %s (%s), left by a %s that was killed.\n", name, size(l.Size), what)
		case l.Held:
			c.warnf("Left %s alone: a %s running now holds it.\n", name, what)
		case l.Err != nil:
			c.warnf("warning: %s, left by a %s that was killed: %s\n", name, what, printable(l.Err.Error()))
		default:
			c.warnf("Would remove %s (%s), left by a %s that was killed.\n", name, size(l.Size), what)
		}
		out = append(out, jsonLeftover{Path: l.Path, Bytes: l.Size, Removed: l.Removed, Held: l.Held})
	}
	return out
}
