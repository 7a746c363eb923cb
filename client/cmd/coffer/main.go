// Command coffer is Coffer's client: it makes and restores end-to-end
// encrypted backups, and keeps their key either as a 64-digit key the user
// writes down or behind a password in a Coffer vault or a realm set (any t
// of n vaults, protocol/REALMS.md).
//
//	coffer [-config FILE] COMMAND [flags] [args]
//
// Run `coffer help` for the commands. The formats it writes are in
// client/SPEC.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/client/logcheck"
)

const usage = `usage: coffer [-config FILE] COMMAND [flags] [args]

Commands:
  init --server URL --token T --provisioning-key HEX [--password] [--limit N] [--log-policy FILE] [--insecure] [--qr]
        make this account's backup key K (once). Without --password: show it as a
        64-digit key (with --qr also as a QR code) for you to keep. With --password:
        store it in the vault behind a password. With --existing: this account already
        has a key in the vault (a new device): log in to fetch it. With --password
        --key KEY (or --key-file FILE): store an existing 64-digit key instead of a new
        one, which moves an account from the 64-digit key to password mode.
  init --realms FILE [--threshold t] [--limit N] [--log-policy FILE] [--insecure] [--force]
        make K and keep it behind a password at a realm set: any t (default a majority)
        of the n vaults FILE lists recover it, each behind its own cofferd and operator.
        FILE is JSON: [{"name", "server", "token", "provisioning_key", "operator"}, ...].
        Shows each realm and the guess bounds, and prints the set code to keep.
        --limit bounds the guesses of someone who controls the servers and t-1 realms
        (default 10); --force commits once t realms registered instead of all n.
  init --realms FILE --existing --set-code CODE [--threshold t] [--insecure]
        a new device of a realm set: recover K with the password, trusting only
        versions whose anchor gives the set code printed on the first device.
  backup PATH... -o FILE [--force] [--exclude PATTERN]... [--exclude-file FILE] [--dry-run] [--json]
        write an encrypted backup of PATH... to FILE ("-" for stdout). Needs no
        password and no vault: only the public age recipient in the configuration.
        --exclude leaves out what PATTERN matches (a base name, or a path in the
        backup); --dry-run lists what would be backed up and left out. Exit status
        3: done, but some entries were left out (each is named).
  restore FILE [PATH...] [-C DIR] [--force] [--dry-run] [--json] [--key KEY]
        restore a backup into DIR (default: the current folder), or only the PATHs
        given (as ls shows them), getting K with the password (vault login, or t
        realms of a realm set) or the 64-digit key. --dry-run lists what would be
        restored and replaced, writing nothing.
  ls FILE [--json] [--key KEY]
        list a backup's entries (type, mode, size, time, path) without restoring.
  verify FILE [--json] [--key KEY]
        decrypt and check a whole backup, writing nothing: exit status 1 if any byte
        or entry is wrong.
  key export-age
        print the age identity that decrypts every backup (age -d -i FILE).
  key rotate [--force]
        realm set: replace K by a new key under the same password; devices that know the
        old set code follow; prints the new set code. Old backups stay readable with the
        old key until deleted.
  password change [--resume] [--force]
        change the vault password (K stays the same). With a realm set the new password
        is put at every realm and committed only once every realm has it (--force: once
        t have it, at a lower tolerance); until then both passwords work. --resume
        finishes a change cut short here or on another device.
  delete [--yes]
        erase K from the vault (or every realm of the set) for ever.
  status [--offline]
        show the account, the pinned vault, and the vault's state.
  log pin FILE [--url URL]
        pin the release log's policy in FILE (its origin, release key, witnesses,
        quorum and max-age) for an existing account. From then on every vault of the
        account must have its identity bundle and its release in that log, and neither
        revoked. --url also reads the log at URL (its own address or a mirror) at every
        contact, besides each vault's cofferd, so that no one host can hold back a
        revocation ("" forgets it).
  vault accept-new-identity [--yes] [--insecure]
        the vault's identity keys changed (a new device, keys rotated): show the old
        and new keys and where each is in the release log, and pin the new identity
        if you confirm (--yes for scripts). An upgrade that keeps the keys needs none.
  vault recover-rollback [--yes] [--key KEY | --key-file FILE [--limit N]] [--insecure]
        after the vault's store was rolled back (commands stop with ROLLBACK): show what the
        vault signs now and whether its operator declared the rollback, and only on your word
        (typed, or --yes) accept that state and move the key to a NEW password. If the rollback
        lost the key, --key or --key-file registers the 64-digit key again, if you kept it.
  realms [--insecure]
        probe every realm of a realm set (counting nothing) and show its health:
        per realm reachable, operator, fingerprint, state, versions, tries left;
        for the set whether it is recoverable, its tolerance, tries left, bounds.
  realms repair --realms FILE [--threshold t] [--limit N] [--force]
        after recovering the key with the password, move it onto the set FILE lists
        (replace or add realms), then delete it at realms left out, where reachable.
        A realm that cannot be reached keeps its old share: rotate the key then.
  realms burn NAME [--yes] [--register]
        clear a realm's stale record, one no password opens (a first registration
        cut before t realms held it, a realm left out while down): only when its
        manifest is known, fewer than its t listed realms may hold it (one that does
        not answer counts as holding it) and it is not your current or a newer
        version. It asks y/N (--yes for scripts), then spends up to L counted
        evaluations there, shown. --register then registers your key there again.

Release log: every vault is checked, at init and at every contact, against the release
log whose policy --log-policy or "coffer log pin" pinned: its identity bundle and its firmware
release must be logged, under a checkpoint cosigned by the policy's quorum of witnesses
and consistent with every checkpoint seen before. A revoked release or identity is
refused always; a revoked identity's keys are refused in any bundle. A policy with a
max-age also needs the newest checkpoint this device can get (from any vault's host or
the --url of "coffer log pin") to be that recent: an older one could be hiding a
revocation. Coffer ships no default policy yet: get one from your log's operator.
--insecure accepts an insecure vault (software vault, QEMU; init records that) and, for
that run only, a vault not in the log or checked against a log older than its max-age,
saying so every time. With no policy pinned, a vault is used unchecked only when
insecure vaults are allowed, with a warning.

Passwords are read from the terminal, or for scripts from --password-file FILE or
COFFER_PASSWORD (and --new-password-file or COFFER_NEW_PASSWORD); a 64-digit key from
--key, --key-file FILE, COFFER_KEY or the terminal. The configuration is
$XDG_CONFIG_HOME/coffer/config.json unless -config or COFFER_CONFIG says otherwise.

Exit status: 0 done, 1 failed, 2 a mistake on the command line, 3 a backup made
but incomplete. --json prints one JSON object on standard output (README.md).
`

// cli is one run of the command, with everything it touches injectable for
// tests.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal reads a line without echo from the user's terminal; nil
	// when there is none (tests, scripts).
	terminal func(prompt string) ([]byte, error)
	// progress says whether to draw progress bars on stderr.
	progress   bool
	httpClient *http.Client
	// logSource serves the release log instead of each cofferd (tests).
	logSource logcheck.Source
	// warnMu keeps warnings from realms' goroutines whole.
	warnMu sync.Mutex

	configPath string
}

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	c.terminal = ttyReader(c.stderr)
	c.progress = stderrIsTerminal()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(c.run(ctx, os.Args[1:]))
}

// errUsage marks a command-line mistake (exit status 2).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usagef(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

func (c *cli) run(ctx context.Context, args []string) int {
	top := flag.NewFlagSet("coffer", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.StringVar(&c.configPath, "config", "", "configuration file")
	if err := top.Parse(args); err != nil {
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	args = top.Args()
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "init":
		err = c.cmdInit(ctx, args)
	case "backup":
		err = c.cmdBackup(ctx, args)
	case "restore":
		err = c.cmdRestore(ctx, args)
	case "ls":
		err = c.cmdLs(ctx, args)
	case "verify":
		err = c.cmdVerify(ctx, args)
	case "key":
		if len(args) > 0 && args[0] == "rotate" {
			err = c.cmdKeyRotate(ctx, args[1:])
			break
		}
		if len(args) == 0 || args[0] != "export-age" {
			err = usagef("usage: coffer key export-age")
			break
		}
		err = c.cmdExportAge(ctx, args[1:])
	case "password":
		if len(args) == 0 || args[0] != "change" {
			err = usagef("usage: coffer password change")
			break
		}
		err = c.cmdPasswordChange(ctx, args[1:])
	case "delete":
		err = c.cmdDelete(ctx, args)
	case "status":
		err = c.cmdStatus(ctx, args)
	case "realms":
		err = c.cmdRealms(ctx, args)
	case "log":
		err = c.cmdLog(ctx, args)
	case "vault":
		err = c.cmdVault(ctx, args)
	case "help", "-h", "--help":
		fmt.Fprint(c.stdout, usage)
		return 0
	default:
		err = usagef("unknown command %q", cmd)
	}
	if err == nil {
		return 0
	}
	var ue errUsage
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stderr, "coffer %s: %v\n", cmd, err)
		}
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	fmt.Fprintf(c.stderr, "coffer %s: %s\n", cmd, printable(strings.TrimPrefix(err.Error(), "client: ")))
	if ee := (errExit{}); errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// printable escapes, in a message about to be printed, every control or
// format character and every byte of invalid UTF-8, as Go escapes (\n,
// \x1b, \u202e, \xff), and leaves the rest as it is. Names are quoted
// (client.QuoteName) where messages are made; this is the backstop for a
// name inside an error from elsewhere, so that none can fake a line of
// output or drive the terminal.
func printable(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = fmt.Appendf(b, `\x%02x`, s[i])
		case !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b = append(b, q[1:len(q)-1]...)
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// flags is a subcommand's flag set; every one takes -config too.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("coffer "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.configPath, "config", c.configPath, "configuration file")
	return fs
}

// parse parses flags anywhere among the arguments (coffer backup a b -o f)
// and returns the others. After "--" everything is an argument.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return rest, nil
}

func (c *cli) path() (string, error) {
	if c.configPath != "" {
		return c.configPath, nil
	}
	if p := c.getenv("COFFER_CONFIG"); p != "" {
		return p, nil
	}
	return client.DefaultConfigPath()
}

func (c *cli) loadConfig() (*client.Config, string, error) {
	p, err := c.path()
	if err != nil {
		return nil, "", err
	}
	cfg, err := client.LoadConfig(p)
	return cfg, p, err
}

func (c *cli) printf(format string, args ...any) { fmt.Fprintf(c.stdout, format, args...) }
func (c *cli) warnf(format string, args ...any) {
	c.warnMu.Lock()
	defer c.warnMu.Unlock()
	fmt.Fprintf(c.stderr, format, args...)
}

// notice prints what the library says the user must be told about a vault
// at this contact (an unverified or unlogged vault let through, an
// upgrade), every time.
func (c *cli) notice(n client.Notice) { c.warnf("%s\n", printable(n.Text)) }
