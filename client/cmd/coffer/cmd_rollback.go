package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/client"
)

// rollbackAdvice adds to a rollback error of a single vault what to do
// about it (client/SPEC.md, "Recovering from a rollback").
func rollbackAdvice(err error) error {
	var rb *client.RollbackError
	if !errors.As(err, &rb) {
		return err
	}
	return fmt.Errorf("%w. Ask the vault's operator: they restore the latest state (then nothing is needed here), "+
		"or declare the rollback; then `coffer vault recover-rollback` shows what the vault signs now and, on your word, "+
		"moves your key to a new password", err)
}

// cmdRecoverRollback is `coffer vault recover-rollback`: after a rollback
// of the vault's store, show the user the vault's fresh signed state and
// the operator's declarations, and only on their word accept that state
// and move the key to a new password (or, if the rollback lost the
// record, register the 64-digit key again).
func (c *cli) cmdRecoverRollback(ctx context.Context, args []string) error {
	fset := c.flags("vault recover-rollback")
	ks := c.keySourceFlags(fset)
	newFile := fset.String("new-password-file", "", "read the new password from FILE (else COFFER_NEW_PASSWORD, or asked)")
	limit := fset.Uint("limit", 0, "with --key or --key-file: the attempt limit of the new registration (default: the account's)")
	yes := fset.Bool("yes", false, "accept the vault's current state without being asked (for scripts: read what this prints first)")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	useKey := ks.key.given(c)
	if *limit != 0 && !useKey {
		return usagef("--limit is for registering the 64-digit key again (--key or --key-file): a recovery with the password keeps the record's limit")
	}
	cfg, path, err := c.loadConfig()
	if err != nil {
		return err
	}
	if cfg.Mode != client.ModePassword {
		return errors.New("this account keeps its key as a 64-digit key, not in a vault: a rollback of a vault does not concern it")
	}
	if cfg.Realms != nil {
		return errors.New("a realm set survives a rollback at fewer than t realms: replace the rolled-back realm with `coffer realms repair`")
	}
	opts := c.vaultOptions(ks.insecure)
	opts.RecoverRollback = true // the rollback is shown below, not refused at the contact
	vc, err := c.connectWith(ctx, cfg, path, opts)
	if err != nil {
		return err
	}
	st, err := vc.CheckRollback(ctx)
	if err != nil {
		return err
	}
	declarations, derr := vc.RollbackDeclarations(ctx)
	c.showRollback(cfg, st, declarations, derr, useKey)
	if err := c.confirmRollback(*yes); err != nil {
		return err
	}

	var rec *client.RollbackRecovery
	if useKey {
		k, err := c.typedKey(ks.key)
		if err != nil {
			return err
		}
		defer k.Wipe()
		pw, err := c.secret(*newFile, "COFFER_NEW_PASSWORD", "New vault password", true)
		if err != nil {
			return err
		}
		defer clear(pw)
		rec, err = vc.RegisterAfterRollback(ctx, st, k, pw, *limit)
		c.save(cfg, path)
		if err != nil {
			return err
		}
	} else {
		// RecoverRollback logs in before it changes anything, and on a
		// wrong password puts the configuration back as it was: on a
		// terminal the password is asked again, with the count of tries
		// the vault's state as it is now signs. The new password is asked
		// once, after the first.
		var npw []byte
		defer func() { clear(npw) }()
		err := c.withPassword(ctx, ks.pwFile, "COFFER_PASSWORD", c.vaultTarget(func(ctx context.Context) (*client.UserStatus, error) {
			return vc.RollbackUserStatus(ctx, st)
		}, cfg, path, "Vault password that the vault's state knows", func(ctx context.Context, pw []byte) error {
			if npw == nil {
				var err error
				if npw, err = c.secret(*newFile, "COFFER_NEW_PASSWORD", "New vault password", true); err != nil {
					return err
				}
			}
			var err error
			rec, err = vc.RecoverRollback(ctx, st, pw, npw)
			c.save(cfg, path)
			if errors.Is(err, client.ErrNotHeld) {
				return fmt.Errorf("%w. Its state is from before this account's key was registered, or its store was lost "+
					"(if it is from before a password change, try the password you had then): the key is GONE from the vault. "+
					"If you kept the 64-digit key, run this again with --key-file FILE to register it behind a new password. "+
					"Otherwise nobody can get it back: backups made so far open only with an age identity exported earlier "+
					"(coffer key export-age); start afresh by moving %s away and running coffer init --password. Nothing was changed",
					err, client.QuoteName(path))
			}
			return err
		}))
		if errors.Is(err, client.ErrNotHeld) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w. Nothing was changed: this device still stops at the rollback", err)
		}
		if n := rec.Released.FailedSinceSuccess; n > 0 {
			c.warnf("NOTE: the vault's state has %s on record since the last successful login (logins stopped at the rollback count too).\n",
				client.Plural(n, "failed attempt"))
		}
	}
	r := rec.Receipt
	c.printf("Recovered from the rollback: the key is now behind your new password (a new registration, receipt verified), "+
		"%d wrong passwords in a row erase it. Store sequence %d is this device's new baseline: a rollback below it stops this device again.\n",
		r.Limit, r.StoreSequence)
	c.printf("The backup key is the same: every backup made so far opens as before.\n")
	return nil
}

// showRollback tells the user what they are about to accept.
func (c *cli) showRollback(cfg *client.Config, st *client.RollbackState, declarations []client.RollbackDeclaration, derr error, useKey bool) {
	name := ""
	if cfg.Vault != nil {
		name = cfg.Vault.Name
	}
	c.warnf("Rollback recovery, vault %q at %s.\n", name, cfg.Server)
	if st.Behind() {
		c.warnf("This device has seen store sequence %d; the vault now signs %d (a fresh signed status): its store WENT BACK,\n"+
			"undoing whatever was counted since, your wrong passwords and anybody's guesses included.\n",
			st.HighestSeen, st.Current)
	} else {
		c.warnf("The vault's signed store sequence (%d) is not behind the highest this device has seen (%d). A rollback of\n"+
			"this account's own record shows only at a login (\"ROLLBACK: the vault counts N attempts on this account\"):\n"+
			"go on only if a command stopped so.\n", st.Current, st.HighestSeen)
	}
	switch {
	case errors.Is(derr, client.ErrNoDeclarations):
		c.warnf("This cofferd does not serve rollback declarations: ask its operator whether they rolled the vault back, and why.\n")
	case derr != nil:
		c.warnf("The operator's declarations could not be read (%s): ask the operator whether they rolled the vault back, and why.\n",
			printable(strings.TrimPrefix(derr.Error(), "client: ")))
	case len(declarations) == 0:
		c.warnf("The operator has declared NO rollback of this vault. Ask them before you go on: a rollback nobody owns up to\n" +
			"may be an attack, made to undo counted guesses at your password.\n")
	default:
		c.warnf("The operator of this cofferd declared (cofferd's word, which proves nothing by itself):\n")
		for _, d := range declarations {
			c.warnf("  %s  %q\n", d.DeclaredAt.UTC().Format(time.DateTime+" MST"), d.Reason)
		}
	}
	c.warnf("Going on accepts the vault's state as it is now as this device's new baseline (a rollback below it stops this device again)")
	if useKey {
		c.warnf(",\nand registers the 64-digit key you give behind a NEW password, where the vault no longer holds this account's record.\n")
	} else {
		c.warnf(",\nlogs in with the password the vault's state knows, and moves the key to a NEW password (a new registration):\n" +
			"guesses the rollback undid may have been made against the old one, beyond the attempt limit.\n")
	}
	c.warnf("If somebody guessed the old password, they may have your backup key, and no new password takes it back: for future\n" +
		"backups, consider a new key (a new account, coffer init). Backups made so far stay readable with this key.\n")
}

// confirmRollback asks the user to accept the rollback in so many words:
// nothing the vault or cofferd sends can.
func (c *cli) confirmRollback(yes bool) error {
	return c.confirmWord(yes, "accept-rollback",
		"a rollback is accepted only on your word: run this in a terminal, or add --yes once you have read the above; nothing was changed",
		"not confirmed; nothing was changed")
}
