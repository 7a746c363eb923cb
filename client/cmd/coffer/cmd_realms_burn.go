package main

// `coffer realms burn NAME`: clear a realm's stale record (REALMS.md 13.3,
// "Burning a stale record").

import (
	"context"
	"errors"
	"fmt"
)

// cmdRealmsBurn is `coffer realms burn NAME [--yes] [--register]`. The
// library refuses unless rules 1-3 hold, then asks (rule 4): y/N on the
// terminal, or --yes for scripts. With --register, a repair onto the same
// set with the password then registers the user's key there openly.
func (c *cli) cmdRealmsBurn(ctx context.Context, args []string) error {
	fset := c.flags("realms burn")
	ks := c.keySourceFlags(fset)
	yes := fset.Bool("yes", false, "burn without asking (scripts); the rules that refuse a burn still apply")
	register := fset.Bool("register", false, "then register your key there again (asks for the password; a repair onto the same set)")
	rest, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("realms burn needs the name of one realm")
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Realms == nil {
		return errors.New("this account has no realm set (coffer init --realms FILE makes one)")
	}
	rs, err := c.realmSetFor(cfg, path, ks.insecure, false)
	if err != nil {
		return err
	}
	var confirmErr error
	confirm := func(what string) bool {
		c.warnf("%s\n", printable(what))
		if *yes {
			return true
		}
		if c.ask == nil {
			confirmErr = errors.New("not confirmed (no terminal): give --yes to burn; nothing was evaluated")
			return false
		}
		ok, err := c.yes("Burn it?")
		if err != nil {
			confirmErr = err
		}
		return ok
	}
	rep, err := rs.Burn(ctx, rest[0], confirm)
	c.save(cfg, path)
	if confirmErr != nil {
		return confirmErr
	}
	if err != nil {
		return err
	}
	c.printf("%s\n", printable(rep.Summary()))
	if !*register || rep.Forgotten {
		return nil
	}
	// The burn is done; the registration (a repair onto the same set)
	// recovers K first, so a wrong password changes nothing and is asked
	// again on a terminal.
	err = c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.realmTarget(rs, cfg, path, "Password", func(ctx context.Context, pw []byte) error {
		ch, err := rs.RegisterAfterBurn(ctx, pw)
		c.save(cfg, path)
		c.printChange(ch)
		return err
	}))
	if err != nil {
		return fmt.Errorf("the realm is burned, but your key was not registered there again: %w", err)
	}
	return nil
}
