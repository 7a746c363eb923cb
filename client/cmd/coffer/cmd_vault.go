package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/internal/atomicfile"
	"github.com/cofferhsm/coffer/protocol"
)

func (c *cli) cmdExportAge(ctx context.Context, args []string) error {
	fset := c.flags("key export-age")
	ks := c.keySourceFlags(fset)
	out := fset.String("o", "", "write the identity to `FILE`, made new with mode 0600, instead of standard output")
	force := fset.Bool("force", false, "with -o: replace FILE if it exists")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	if *force && *out == "" {
		return usagef("--force goes with -o FILE")
	}
	// Before a vault login spends an attempt.
	if _, err := os.Lstat(*out); *out != "" && !*force && err == nil {
		return fmt.Errorf("%s exists (use --force to replace it)", client.QuoteName(*out))
	}
	cfg, path, err := c.loadConfig()
	if errors.Is(err, client.ErrNoConfig) {
		cfg = nil
	} else if err != nil {
		return err
	}
	k, err := c.backupKey(ctx, cfg, path, ks)
	if err != nil {
		return err
	}
	defer k.Wipe()
	r, err := k.AgeRecipient()
	if err != nil {
		return err
	}
	c.warnf("This identity decrypts every backup of this account (age -d -i FILE BACKUP | tar x). Keep it as safe as the key.\n")
	text := fmt.Sprintf("# Coffer backup identity, derived from the account's backup key\n# public key: %s\n%s\n", r, k.AgeIdentityString())
	if *out == "" {
		c.printf("%s", text)
		return nil
	}
	if err := writePrivate(*out, []byte(text), *force); err != nil {
		return err
	}
	c.warnf("Wrote it to %s (mode 0600).\n", client.QuoteName(*out))
	return nil
}

// writePrivate writes a secret to a file only its owner reads (0600), as
// age-keygen -o does: a new file (atomicfile.Create, which links a whole
// temporary file as path and never follows a link planted there), or with
// force one renamed over path, which replaces a link rather than writing
// through it. A crash leaves the file whole or absent, never torn.
func writePrivate(path string, b []byte, force bool) error {
	if force {
		return atomicfile.Write(path, b)
	}
	err := atomicfile.Create(path, b, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists (use --force to replace it)", client.QuoteName(path))
	}
	return err
}

func (c *cli) cmdPasswordChange(ctx context.Context, args []string) error {
	fset := c.flags("password change")
	ks := c.keySourceFlags(fset)
	newFile := fset.String("new-password-file", "", "read the new password from FILE (else COFFER_NEW_PASSWORD, or asked)")
	resume := fset.Bool("resume", false, "realm set: finish an unfinished change (cmd_realms_change.go)")
	force := fset.Bool("force", false, "realm set: commit once t realms hold the new password, at a lower tolerance")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Realms != nil {
		return c.realmPasswordChange(ctx, cfg, path, ks, *newFile, *resume, *force)
	}
	s, err := c.login(ctx, cfg, path, ks, "Current vault password")
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	pw, err := c.secret(*newFile, "COFFER_NEW_PASSWORD", "New vault password", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	r, err := s.ChangePassword(ctx, pw, 0)
	c.save(cfg, path)
	if err != nil {
		return err
	}
	c.printf("Password changed (receipt verified, store sequence %d); the backup key and every backup stay the same.\n", r.StoreSequence)
	return nil
}

func (c *cli) cmdDelete(ctx context.Context, args []string) error {
	fset := c.flags("delete")
	ks := c.keySourceFlags(fset)
	yes := fset.Bool("yes", false, "do not ask for confirmation")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Mode != client.ModePassword {
		return errors.New("this account keeps its key as a 64-digit key: there is nothing in a vault to delete")
	}
	if cfg.Realms != nil {
		return c.realmDelete(ctx, cfg, path, ks, *yes)
	}
	const warning = "This erases this account's backup key from the vault for ever. Backups made so far can then be\n" +
		"opened only with an age identity exported before (coffer key export-age)."
	if err := c.confirmDelete(warning, *yes); err != nil {
		return err
	}
	s, err := c.login(ctx, cfg, path, ks, "Vault password")
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	r, err := s.Delete(ctx)
	c.save(cfg, path)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		c.warnf("warning: could not remove %s: %s\n", client.QuoteName(path), printable(err.Error()))
	}
	c.printf("The vault erased this account's key (receipt verified, store sequence %d). Removed %s.\n", r.StoreSequence, client.QuoteName(path))
	return nil
}

func (c *cli) cmdStatus(ctx context.Context, args []string) error {
	fset := c.flags("status")
	offline := fset.Bool("offline", false, "show only what the configuration holds")
	insecure := fset.Bool("insecure", false, insecureHelp)
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	c.printConfigHeader(cfg, path)
	if cfg.Mode != client.ModePassword {
		c.printf("vault:            none (the user keeps the 64-digit key)\n")
		return nil
	}
	if rc := cfg.Realms; rc != nil {
		c.printf("release log:      %s\n", logPinText(cfg.Log))
		c.printf("realm set:        any %d of %d realms (%s)\n", rc.Threshold, len(rc.Set), realmNameList(rc))
		c.printf("limit:            %d (each realm counts to %d)\n", rc.Limit, rc.PerRealm)
		c.printf("set code:         %s\n", orNone(rc.SetCode()))
		c.printf("`coffer realms` probes every realm and shows the set's health.\n")
		return nil
	}
	c.printf("server:           %s\n", cfg.Server)
	c.printf("user id:          %s\n", cfg.UserID)
	c.printf("attempt limit:    %d\n", cfg.Limit)
	c.printf("insecure allowed: %v\n", cfg.AllowInsecure)
	var (
		online error
		count  *client.UserStatus
	)
	if !*offline {
		// Fetch and check the bundle and the signed status (the contact
		// does both) and the signed count of this user's tries first, so
		// that what is shown below is fresh.
		vc, err := c.connect(ctx, cfg, path, *insecure)
		if err == nil {
			count, err = vc.UserStatus(ctx)
			if unsupported(err) {
				// A vault (or cofferd) older than the user status: the
				// count is not shown, and nothing else is at stake.
				c.warnf("note: this vault does not give a count of tries without spending one (%s)\n",
					printable(strings.TrimPrefix(err.Error(), "client: ")))
				err = nil
			}
		}
		c.save(cfg, path)
		online = err
	}
	c.printf("release log:      %s\n", logPinText(cfg.Log))
	if v := cfg.Vault; v != nil {
		c.printf("vault:            %q, insecure=%v, max %d attempts\n", v.Name, v.Insecure, v.MaxLimit)
		c.printf("vault signing key: %s\n", v.SigningKey)
		c.printf("vault firmware:   %s\n", v.FirmwareHash)
		if cfg.Log != nil {
			c.printf("vault in the log: %s\n", loggedText(v.Logged))
		}
	}
	c.printf("pinned bundle:    %s\n", orNone(cfg.BundleHash))
	c.printf("highest store sequence seen: %d\n", cfg.HighestStoreSequence)
	if r := cfg.LastReceipt; r != nil {
		c.printf("last receipt:     %s, %d of %d tries left, %s since the last success, store sequence %d\n",
			r.Kind, r.TriesLeft, r.Limit, client.Plural(r.FailedSinceSuccess, "failed attempt"), r.StoreSequence)
	} else {
		c.printf("last receipt:     none\n")
	}
	if count != nil {
		// Only a count that verified (signature, nonce, user, sequence, the
		// last receipt) is shown as the vault's.
		c.printf("tries left now:   %d of %d, %s since the last success (signed by the vault for this request; asking counts nothing)\n",
			count.TriesLeft, count.Limit, client.Plural(count.FailedSinceSuccess, "failed attempt"))
		if count.TriesLeft == 0 && count.RevivableMillis > 0 {
			c.printf("                  locked for now: the login that made the last try can still restore the key within %s\n",
				(time.Duration(count.RevivableMillis) * time.Millisecond).Round(time.Second))
		}
		if count.OtherRegistration {
			c.printf("                  NOTE: that count is of registration %x, not the one this device registered or last opened: "+
				"the key this device knows was deleted or replaced, or given a new password from another device\n", count.Generation)
		}
		if count.NotFromThisKnown && count.NotFromThisDevice > 0 {
			c.printf("                  %s since this device's last receipt %s not made from this device\n",
				client.Plural(uint(count.NotFromThisDevice), "attempt"), map[bool]string{true: "was", false: "were"}[count.NotFromThisDevice == 1])
		}
	}
	switch {
	case *offline:
	case online != nil:
		return fmt.Errorf("vault check failed: %w", rollbackAdvice(online))
	default:
		logged := "NOT checked against a release log"
		if cfg.Log != nil && cfg.Vault != nil && cfg.Vault.Logged != nil {
			logged = "bundle and release in the release log, not revoked"
		} else if cfg.Log != nil {
			logged = "NOT in the release log (accepted with --insecure)"
		}
		c.printf("vault check:      bundle verified and pinned, %s, signed status verified (fresh, running the bundle's firmware), signed count of tries verified, no rollback\n", logged)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// unsupported reports whether err is a vault or a cofferd that does not know
// a request: the vault's malformed (an unknown type) or cofferd's 400.
func unsupported(err error) bool {
	var se *client.ServerError
	return errors.Is(err, &protocol.Error{Code: protocol.CodeMalformed}) ||
		(errors.As(err, &se) && se.StatusCode == http.StatusBadRequest)
}
