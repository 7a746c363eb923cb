package main

import (
	"context"

	"github.com/cofferhsm/coffer/client"
)

// cmdVerify decrypts and reads a whole backup, checking every byte's
// authentication and every rule a restore checks, and writes nothing: a
// failure exits 1 saying what is wrong, as a restore would.
func (c *cli) cmdVerify(ctx context.Context, args []string) error {
	file, st, jsonOut, err := c.readArchive(ctx, "verify", "print a JSON summary on standard output", args, nil)
	if err != nil {
		return err
	}
	if jsonOut {
		return c.printJSON(newArchiveJSON("verify", file, st))
	}
	padding := "padded"
	if st.Payload != client.PadmeLength(st.Archive) {
		padding = "not padded (made before padding, or by another tool)"
	}
	c.printf("%s is a good backup for this key: %d files (%s), %d folders, %d symlinks, %d hard links; every byte authenticated, every entry restorable; %s.\n",
		client.QuoteName(file), st.Files, size(st.Bytes), st.Dirs, st.Symlinks, st.Links, padding)
	return nil
}
