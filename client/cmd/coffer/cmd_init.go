package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
)

func (c *cli) cmdInit(ctx context.Context, args []string) error {
	fset := c.flags("init")
	var (
		server   = fset.String("server", "", "cofferd base URL")
		token    = fset.String("token", "", "cofferd bearer token (or COFFER_TOKEN)")
		provKey  = fset.String("provisioning-key", "", "hex Ed25519 key that signs vault identities")
		password = fset.Bool("password", false, "keep the key in the vault behind a password")
		pwFile   = fset.String("password-file", "", "read the password from FILE")
		limit    = fset.Uint("limit", 0, "wrong passwords before the vault erases the key (default 10, at most the vault's maximum)")
		insecure = fset.Bool("insecure", false, insecureHelp+" (software vault, QEMU); recorded in the configuration, except for the release log")
		logPol   = fset.String("log-policy", "", "pin the release log's policy in FILE: every vault is checked against that log")
		qr       = fset.Bool("qr", false, "also show the 64-digit key as a QR code")
		existing = fset.Bool("existing", false, "the account already has a key in the vault (a new device): log in to fetch it")
		keyText  = fset.String("key", "", "with --password: put this existing 64-digit key in the vault instead of making a new one")
		keyFile  = fset.String("key-file", "", "with --password: read the existing 64-digit key from FILE")
		realms   = fset.String("realms", "", "keep the key at a realm set: FILE lists the realms (JSON)")
		thresh   = fset.Int("threshold", 0, "with --realms: how many realms recover the key (default a majority)")
		force    = fset.Bool("force", false, "with --realms: commit once the threshold of realms registered, not all")
		setCode  = fset.String("set-code", "", "with --realms --existing: the set code init printed on the first device")
		backupF  = fset.String("backup", "", "with --realms --existing, instead of --set-code: one of your backups, which the recovered key must open")
		fromKey  = fset.Bool("from-key", false, "with --password: move this account from the 64-digit key to a vault, with the server, token and provisioning key of the configuration; asks for the key")
		caFile   = fset.String("ca", "", "trust the CA certificates (PEM) in FILE too for TLS to cofferd; kept in the configuration")
	)
	rest, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	// A --token typed beside --realms would be silently unused: each
	// realm's token is in the FILE. (COFFER_TOKEN in the environment is
	// not the user's word for this command, and is ignored.)
	tokenFlag := *token != ""
	if *token == "" {
		*token = c.getenv("COFFER_TOKEN")
	}
	if *realms == "" && (*thresh != 0 || *force) {
		return usagef("--threshold and --force are for init --realms")
	}
	if *realms != "" && (*server != "" || tokenFlag || *provKey != "" || *keyText != "" || *keyFile != "" || *qr) {
		return usagef("--realms takes the servers, tokens and provisioning keys from its FILE and keeps a new key behind a password " +
			"(--server, --token, --provisioning-key, --key, --key-file and --qr are for a single vault)")
	}
	if (*setCode != "" || *backupF != "") && (*realms == "" || !*existing) {
		return usagef("--set-code and --backup are for init --realms FILE --existing (a new device of a realm set)")
	}
	if *existing && *realms != "" && *force {
		return usagef("--force is for registering a new key, not for --existing")
	}
	given := keyFlags{text: *keyText, file: *keyFile}
	keyGiven := given.text != "" || given.file != ""
	if keyGiven && (!*password || *existing) {
		return usagef("--key and --key-file are for init --password: they put an existing 64-digit key in the vault")
	}
	if *fromKey && (!*password || *existing || *realms != "") {
		return usagef("--from-key goes with --password: it moves an account from the 64-digit key to a vault")
	}
	if *limit == 1 {
		c.warnLimitOne()
	}
	ca := ""
	if *caFile != "" {
		if ca, err = absCA(*caFile); err != nil {
			return err
		}
	}
	if *logPol != "" && *realms == "" && !*password && !*existing {
		return usagef("--log-policy is for a vault (--password, --existing or --realms): a 64-digit key needs none")
	}
	var logPin []byte
	if *logPol != "" {
		if logPin, err = os.ReadFile(*logPol); err != nil {
			return err
		}
		if _, err := client.NewLogPin(logPin); err != nil {
			return usagef("--log-policy %s: %v", client.QuoteName(*logPol), err)
		}
	}
	path, err := c.path()
	if err != nil {
		return err
	}
	// An account that keeps its key as the 64-digit key may move to
	// password mode with that same key: its backups stay as they are.
	var moving *client.Config
	if _, err := os.Lstat(path); err == nil {
		if keyGiven || *fromKey {
			old, err := client.LoadConfig(path)
			if err != nil {
				return err
			}
			if old.Mode == client.ModeKey {
				moving = old
			}
		}
		if moving == nil {
			return fmt.Errorf("already initialised (%s): the backup key is made once per account, "+
				"and every backup so far needs it; remove that file only if you mean to start again", client.QuoteName(path))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	} else if *fromKey {
		return fmt.Errorf("no configuration at %s: --from-key moves an account initialised with the 64-digit key", client.QuoteName(path))
	}
	if moving != nil {
		// What the configuration holds need not be typed again; a flag
		// (or COFFER_TOKEN) says otherwise.
		*server = cmp.Or(*server, moving.Server)
		*token = cmp.Or(*token, moving.Token)
		*provKey = cmp.Or(*provKey, moving.ProvisioningKey)
		ca = cmp.Or(ca, moving.CA)
	}
	c.useCA(ca)
	if *realms == "" && (*password || *existing) && (*server == "" || *token == "" || *provKey == "") {
		if moving != nil {
			return usagef("the configuration lacks a server, a token or a provisioning key: give them with --server, --token and --provisioning-key")
		}
		return usagef("--password and --existing need --server, --token and --provisioning-key")
	}
	// The typed key is checked (its check group) before anything is sent.
	var given64 *client.BackupKey
	if keyGiven || *fromKey {
		if given64, err = c.typedKey(given); err != nil {
			return err
		}
		defer given64.Wipe()
		r, err := given64.AgeRecipient()
		if err != nil {
			return err
		}
		if moving != nil && r != moving.AgeRecipient {
			return fmt.Errorf("this is not this account's key: it encrypts to %s, but this account's backups are encrypted to %s (%s); nothing was changed",
				r, moving.AgeRecipient, path)
		}
	}
	if *realms != "" {
		rf := realmFlags{ca: ca, file: *realms, threshold: *thresh, limit: *limit, insecure: *insecure, force: *force, pwFile: *pwFile, setCode: *setCode, backup: *backupF, logPolicy: logPin}
		if *existing {
			return c.initRealmsExisting(ctx, path, rf)
		}
		return c.initRealms(ctx, path, rf)
	}
	cfg := &client.Config{Version: client.ConfigVersion, Server: *server, Token: *token, ProvisioningKey: strings.ToLower(*provKey), CA: ca}

	if !*password && !*existing {
		if *pwFile != "" || *limit != 0 {
			return usagef("--password-file and --limit need --password")
		}
		return c.initKeyMode(cfg, path, *qr)
	}
	if *qr {
		return usagef("--qr is for the 64-digit key (init without --password)")
	}
	if _, err := client.ParseProvisioningKey(cfg.ProvisioningKey); err != nil {
		return usagef("%v", err)
	}
	if u, err := url.Parse(*server); err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		c.warnf("warning: %s is plain HTTP: anyone on the way can read the token and spend this account's guesses (never the password or the key)\n", *server)
	}
	// The vault is asked to keep K only if its recipient can be kept too.
	if err := checkWritable(path); err != nil {
		return err
	}
	cfg.Mode = client.ModePassword
	cfg.AllowInsecure = *insecure
	if logPin != nil {
		if _, err := cfg.PinLogPolicy(logPin); err != nil {
			return err
		}
	}
	conn, err := client.NewConn(cfg.Server, cfg.Token, c.httpClient)
	if err != nil {
		return err
	}
	acct, err := conn.Account(ctx)
	if err != nil {
		return err
	}
	cfg.UserID = hex.EncodeToString(acct.UserID)
	vc, err := client.Connect(ctx, cfg, c.vaultOptions(*insecure))
	if err != nil {
		return err
	}
	c.showVault(vc.Identity())

	if *existing {
		return c.initExisting(ctx, vc, cfg, path, *pwFile)
	}
	k := given64
	if k == nil {
		if k, err = client.NewBackupKey(nil); err != nil {
			return err
		}
		defer k.Wipe()
	}
	if cfg.AgeRecipient, err = k.AgeRecipient(); err != nil {
		return err
	}
	lim, err := vc.ChooseLimit(*limit)
	if err != nil {
		return err
	}
	pw, err := c.secret(*pwFile, "COFFER_PASSWORD", "New vault password", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	r, err := vc.Register(ctx, pw, k, lim)
	if err != nil {
		return err
	}
	if err := cfg.Save(path); err != nil {
		return fmt.Errorf("the vault holds the key, but the configuration could not be written: %w", err)
	}
	c.printf("The vault holds this account's backup key behind your password (receipt verified, store sequence %d).\n", r.StoreSequence)
	if given64 != nil {
		c.printf("It is the 64-digit key you gave: backups made with it stay as they are, and it still opens them.\n")
	}
	if moving != nil {
		c.printf("This account moved from the 64-digit key to password mode.\n")
	}
	c.printf("%d wrong passwords in a row erase it for ever: then only an exported age identity opens the backups.\n", r.Limit)
	c.printf("Backups are encrypted to %s\nConfiguration: %s\n", cfg.AgeRecipient, client.QuoteName(path))
	return nil
}

// checkWritable makes sure the configuration can be written where it goes.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot write the configuration: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-check-*")
	if err != nil {
		return fmt.Errorf("cannot write the configuration: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// insecureHelp is what --insecure does, for every command's help.
const insecureHelp = "accept an insecure vault, or one not in the release log (said at every contact)"

// vaultOptions are the single vault's options: --insecure lets an insecure
// vault through (as the configuration's allow_insecure does) and, for this
// run only, a vault not in the release log.
func (c *cli) vaultOptions(insecure bool) client.Options {
	return client.Options{HTTPClient: c.httpClient, AllowInsecure: insecure, AllowUnlogged: insecure, LogSource: c.logSource, Notice: c.notice}
}

func (c *cli) showVault(id *protocol.Identity) {
	c.warnf("Vault %q, firmware %x…, maximum %d attempts.\n", id.Name, id.FirmwareHash[:8], id.MaxLimit)
	if id.Insecure {
		c.warnf("WARNING: this vault is INSECURE (a software vault or an emulator): its keys are files on the operator's machine.\n")
	}
}

// initKeyMode makes K and shows it; nothing is sent anywhere.
func (c *cli) initKeyMode(cfg *client.Config, path string, qr bool) error {
	k, err := client.NewBackupKey(nil)
	if err != nil {
		return err
	}
	defer k.Wipe()
	cfg.Mode = client.ModeKey
	if cfg.AgeRecipient, err = k.AgeRecipient(); err != nil {
		return err
	}
	if cfg.ProvisioningKey != "" {
		if _, err := client.ParseProvisioningKey(cfg.ProvisioningKey); err != nil {
			return usagef("%v", err)
		}
	}
	var qrText string
	if qr {
		if qrText, err = k.KeyQR(); err != nil {
			return err
		}
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	g := k.KeyGroups()
	c.printf("Your backup key. Write it down and keep it safe: it is the only way to restore your backups.\n")
	c.printf("It is %d digits and a check group of %d more, %d in all: the check group\n", client.KeyDigits, client.CheckDigits, client.TextDigits)
	c.printf("catches a typo before anything is decrypted. Type all %d to restore.\n\n", client.TextDigits)
	for i := 0; i < 16; i += 4 {
		c.printf("    %s  %s  %s  %s\n", g[i], g[i+1], g[i+2], g[i+3])
	}
	c.printf("    check: %s\n\n", g[16])
	if qr {
		c.printf("%s\n", qrText)
	}
	if err := c.typeBackGroup(k); err != nil {
		// No backup relies on this key yet: better no key than one not
		// written down.
		if rerr := os.Remove(path); rerr != nil {
			return fmt.Errorf("%w; and %s could not be removed: %v", err, client.QuoteName(path), rerr)
		}
		return fmt.Errorf("%w: nothing was kept (%s removed); run coffer init again, with the key written down", err, client.QuoteName(path))
	}
	c.printf("Backups are encrypted to %s\nConfiguration: %s\n", cfg.AgeRecipient, client.QuoteName(path))
	return nil
}

// initExisting logs in to fetch K on a new device.
func (c *cli) initExisting(ctx context.Context, vc *client.Client, cfg *client.Config, path, pwFile string) error {
	var s *client.Session
	// Nothing is saved before the key is fetched: the configuration file
	// is written only once the account works on this device.
	err := c.withPassword(ctx, pwFile, "COFFER_PASSWORD", c.vaultTarget(vc.UserStatus, cfg, "", "Vault password", func(ctx context.Context, pw []byte) error {
		var err error
		s, err = vc.Login(ctx, pw)
		return err
	}))
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	c.reportRelease(s)
	if cfg.AgeRecipient, err = s.BackupKey().AgeRecipient(); err != nil {
		return err
	}
	cfg.Limit = s.Released.Limit
	if err := cfg.Save(path); err != nil {
		return err
	}
	c.printf("Fetched this account's backup key from the vault.\nBackups are encrypted to %s\nConfiguration: %s\n", cfg.AgeRecipient, client.QuoteName(path))
	return nil
}

// reportRelease tells the user about guesses made since the last success.
func (c *cli) reportRelease(s *client.Session) {
	if n := s.Released.FailedSinceSuccess; n > 0 {
		// The vault counts a guess before it answers it, so it cannot tell a
		// wrong password from a login cut off midway (a crash, a dropped
		// connection): say what it knows.
		c.warnf("NOTE: %s counted on this account since its last successful login "+
			"(wrong passwords, or logins cut off before they finished). "+
			"If they were not yours, someone (possibly the operator) is guessing.\n", client.Plural(n, "failed attempt")+map[bool]string{true: " was", false: " were"}[n == 1])
	}
	if n := s.NotFromThisDevice; s.NotFromThisKnown && n > 0 {
		c.warnf("NOTE: %s since this device last used the vault %s not made from this device "+
			"(another device of yours, a login whose reply was lost, or someone else).\n",
			client.Plural(uint(n), "attempt"), map[bool]string{true: "was", false: "were"}[n == 1])
	}
}
