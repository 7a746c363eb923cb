package main

// The release log (client/SPEC.md, "Release log"): `coffer log pin FILE
// [--url URL]` pins the policy of the log every vault is checked against
// (and a log address read besides each vault's cofferd), and `coffer
// vault accept-new-identity` is the user's consent to a vault whose keys
// changed.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

func (c *cli) cmdLogPin(ctx context.Context, args []string) error {
	fset := c.flags("log pin")
	logURL := fset.String("url", "", `also read the log at URL (its own address or a mirror: the tlog-tiles root), besides each vault's cofferd; "" forgets it`)
	rest, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("needs the policy FILE")
	}
	urlGiven := false
	fset.Visit(func(f *flag.Flag) { urlGiven = urlGiven || f.Name == "url" })
	text, err := os.ReadFile(rest[0])
	if err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Mode != client.ModePassword {
		return errors.New("this account keeps its key as a 64-digit key: there is no vault to check against a release log")
	}
	changed, err := cfg.PinLogPolicy(text)
	if err != nil {
		return err
	}
	urlChanged := false
	if urlGiven {
		if urlChanged, err = cfg.PinLogURL(*logURL); err != nil {
			return err
		}
	}
	if !changed && !urlChanged {
		c.printf("This policy is already pinned; nothing changed.\n")
		return nil
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	if changed {
		c.printf("Pinned the release log's policy:\n%s", indent(cfg.Log.Policy))
		c.printf("From the next contact on, every vault of this account must be in that log (its identity bundle and its release), and none revoked.\n")
		if p, err := releaselog.ParsePolicy([]byte(cfg.Log.Policy)); err == nil && p.MaxAge != 0 {
			c.printf("The log must be fresh: a vault is refused unless %d of the witnesses cosigned the newest checkpoint this device can get within %s.\n",
				p.Quorum, releaselog.Age(p.MaxAge))
		}
	}
	switch {
	case urlChanged && cfg.Log.URL != "":
		c.printf("The log is also read at %s at every contact, besides each vault's cofferd.\n", cfg.Log.URL)
	case urlChanged:
		c.printf("Forgot the log URL: the log is read from each vault's cofferd only.\n")
	}
	return nil
}

// logPinText is the release-log line of `coffer status`.
func logPinText(lp *client.LogPin) string {
	if lp == nil {
		return "NONE pinned: vaults are not checked against a release log (`coffer log pin FILE`)"
	}
	p, err := releaselog.ParsePolicy([]byte(lp.Policy))
	if err != nil {
		return "(invalid policy)"
	}
	s := fmt.Sprintf("%s, %d of %d witnesses; %d entries verified, %d revocations", p.Origin, p.Quorum, len(p.Witnesses), lp.View.Size, len(lp.Revoked))
	if cp, err := p.VerifyCheckpoint([]byte(lp.Checkpoint)); err == nil {
		if at, ok := cp.WitnessedAt(p.Quorum, time.Now()); ok {
			s += fmt.Sprintf("; checkpoint cosigned %s ago", releaselog.Age(time.Since(at)))
		}
	}
	if p.MaxAge != 0 {
		s += fmt.Sprintf(" (max-age %s)", releaselog.Age(p.MaxAge))
	}
	if lp.URL != "" {
		s += "; also read at " + lp.URL
	}
	return s
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("    " + l)
		}
	}
	return b.String()
}

func (c *cli) cmdVaultAccept(ctx context.Context, args []string) error {
	fset := c.flags("vault accept-new-identity")
	yes := fset.Bool("yes", false, "do not ask for confirmation")
	insecure := fset.Bool("insecure", false, insecureHelp)
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Mode != client.ModePassword {
		return errors.New("this account keeps its key as a 64-digit key, not in a vault")
	}
	if cfg.Realms != nil {
		return errors.New("a realm whose vault changed its keys is a new realm: replace it with `coffer realms repair`")
	}
	asked := false
	opts := c.vaultOptions(*insecure)
	opts.AcceptNewIdentity = func(ch *client.IdentityChange) error {
		asked = true
		c.showIdentityChange(ch)
		return c.confirmWord(*yes, "accept", "confirm with --yes", "not confirmed")
	}
	_, err = client.Connect(ctx, cfg, opts)
	c.save(cfg, path)
	if err != nil {
		return err
	}
	if !asked {
		c.printf("The vault's identity is the pinned one (or an upgrade with the same keys, shown above): nothing to accept.\n")
		return nil
	}
	c.printf("Pinned the new identity of vault %q (bundle %s).\n", cfg.Vault.Name, cfg.BundleHash)
	c.printf("Its store is not the old vault's: if your key was registered on the old one, this vault does not hold it.\n")
	return nil
}

// showIdentityChange prints both identities, their keys and where each
// is in the release log.
func (c *cli) showIdentityChange(ch *client.IdentityChange) {
	c.warnf("The vault's identity keys CHANGED. Pin the new identity only if you know why (a new device, keys rotated after a compromise).\n")
	c.warnf("  old: bundle %s, logged %s\n", orNone(ch.OldBundle), loggedText(ch.OldLogged))
	c.warnf("       signing key %s\n       AKE key     %s\n       HPKE key    %s\n", orNone(ch.Old.Signing), orNone(ch.Old.AKE), orNone(ch.Old.HPKE))
	c.warnf("  new: vault %q, bundle %s, firmware %x, insecure=%v, logged %s\n", ch.Vault, ch.NewBundle, ch.NewFirmware, ch.NewInsecure, loggedText(ch.NewLogged))
	c.warnf("       signing key %s\n       AKE key     %s\n       HPKE key    %s\n", ch.New.Signing, ch.New.AKE, ch.New.HPKE)
}

func loggedText(l *client.LoggedInfo) string {
	if l == nil {
		return "NOWHERE (not found in a release log)"
	}
	return fmt.Sprintf("at index %d (its release %q, version %d, %s, at index %d)", l.BundleIndex, l.ReleaseName, l.ReleaseVersion, l.Board, l.ReleaseIndex)
}
