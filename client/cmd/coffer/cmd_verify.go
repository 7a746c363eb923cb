package main

import (
	"context"

	"github.com/cofferhsm/coffer/client"
)

// cmdVerify decrypts and reads a whole backup, checking every byte's
// authentication and every rule a restore checks, and writes nothing: a
// failure exits 1 saying what is wrong, as a restore would.
func (c *cli) cmdVerify(ctx context.Context, args []string) error {
	fset := c.flags("verify")
	jsonOut := fset.Bool("json", false, "print a JSON summary on standard output")
	ks := c.keySourceFlags(fset)
	rest, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("needs one backup FILE")
	}
	f, fsize, id, wipe, err := c.backupIdentity(ctx, rest[0], ks)
	if err != nil {
		return err
	}
	defer f.Close()
	defer wipe()
	bar := c.newProgress("verify", fsize)
	st, err := client.ReadBackup(countingReader{ctx, f, bar}, id, nil)
	bar.Finish()
	if err != nil {
		return err
	}
	if *jsonOut {
		return c.printJSON(newArchiveJSON("verify", rest[0], st))
	}
	padding := "padded"
	if st.Payload != client.PadmeLength(st.Archive) {
		padding = "not padded (made before padding, or by another tool)"
	}
	c.printf("%s is a good backup for this key: %d files (%s), %d folders, %d symlinks, %d hard links; every byte authenticated, every entry restorable; %s.\n",
		client.QuoteName(rest[0]), st.Files, size(st.Bytes), st.Dirs, st.Symlinks, st.Links, padding)
	return nil
}
