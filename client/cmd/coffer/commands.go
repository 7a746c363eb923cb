package main

// The commands: one table from which dispatch, `coffer help`, `coffer help
// COMMAND`, `coffer COMMAND --help` and the usage shown after a mistake all
// come. A command's run function stays in its own file; adding a command
// is adding an entry here.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cofferhsm/coffer/internal/buildinfo"
)

// command is one command of the table.
type command struct {
	// name is the words after `coffer`: "backup", "key export-age".
	name string
	// summary is one line for the list of commands.
	summary string
	// usage are its synopses without the leading "coffer ", every flag of
	// the command in them (TestUsageListsEveryFlag) except the global
	// --config.
	usage []string
	// help says what it does, in lines of at most 80 columns once indented
	// by 8.
	help string
	run  func(*cli, context.Context, []string) error
}

// keyFlagsUsage are the flags of keySourceFlags, for synopses.
const keyFlagsUsage = "[--key-file FILE | --key KEY] [--password-file FILE] [--insecure]"

var commands = []*command{
	{
		name:    "init",
		summary: "make this account's backup key (once), or fetch it on a new device",
		usage: []string{
			"init [--server URL --token T --provisioning-key HEX] [--qr]",
			"init --password --server URL --token T --provisioning-key HEX [--password-file FILE] [--limit N] [--log-policy FILE] [--insecure] [--ca FILE]",
			"init --password --from-key [--key-file FILE | --key KEY] [--password-file FILE] [--limit N] [--log-policy FILE] [--insecure] [--ca FILE]",
			"init --existing --server URL --token T --provisioning-key HEX [--password-file FILE] [--log-policy FILE] [--insecure] [--ca FILE]",
			"init --realms FILE [--threshold t] [--limit N] [--password-file FILE] [--log-policy FILE] [--insecure] [--force] [--ca FILE]",
			"init --realms FILE --existing (--set-code CODE | --backup FILE) [--threshold t] [--password-file FILE] [--insecure] [--ca FILE]",
		},
		help: `Without --password: make K and show it as a 64-digit key (with --qr also as a
QR code) for you to write down; on a terminal you then type back one group of
it. --server, --token and --provisioning-key are kept for a later move to a
vault. With --password: keep K in the vault behind a password (--limit wrong
passwords erase it; default 10). With --existing: this account already has a
key in the vault (a new device): log in to fetch it.
--from-key moves an account from the 64-digit key to password mode: it takes
the server, token and provisioning key from the configuration (flags override),
asks for the 64-digit key (typed blind) and a new password, and stores that
same key in the vault, so backups made so far stay as they are. (--password
--key-file FILE with every flag does the same.)
--realms FILE keeps K at a realm set: any t (default a majority) of the n vaults
FILE lists recover it, each behind its own cofferd and operator. FILE is JSON:
[{"name", "server", "token", "provisioning_key", "operator"}, ...]. init shows
each realm and the guess bounds, and prints the set code to keep. --limit bounds
the guesses of someone who controls the servers and t-1 realms (default 10);
--force commits once t realms registered instead of all n. A new device of a
realm set recovers K with the password, trusting only versions whose anchor
gives the set code printed on the first device (or that open --backup FILE).
--ca FILE trusts FILE's certificates (PEM), besides the system's, for TLS to
cofferd, and keeps that in the configuration.`,
		run: (*cli).cmdInit,
	},
	{
		name:    "backup",
		summary: "write an encrypted backup of files and folders",
		usage:   []string{"backup PATH... -o FILE [--force] [--exclude PATTERN]... [--exclude-file FILE]... [--dry-run] [--json]"},
		help: `Write an encrypted backup of PATH... to FILE ("-" for stdout; --force replaces
FILE). Needs no password and no vault: only the public age recipient in the
configuration. --exclude leaves out what PATTERN matches (a base name, or a path
in the backup); --exclude-file reads such patterns from FILE, one a line.
--dry-run lists what would be backed up and left out, writing nothing (-o is
then optional). --json prints a JSON summary on standard output. Exit status 3:
done, but some entries were left out (each is named).`,
		run: (*cli).cmdBackup,
	},
	{
		name:    "restore",
		summary: "restore a backup, or some of its entries",
		usage:   []string{"restore FILE [PATH...] [-C DIR] [--force] [--dry-run] [--json] " + keyFlagsUsage},
		help: `Restore a backup into DIR (default: the current folder), or only the PATHs
given (as ls shows them), getting K with the password (vault login, or t realms
of a realm set) or the 64-digit key. --force replaces files or folders named
like what the restore puts in place. --dry-run lists what would be restored and
replaced, writing nothing. --json prints a JSON summary on standard output.`,
		run: (*cli).cmdRestore,
	},
	{
		name:    "ls",
		summary: "list a backup's entries without restoring",
		usage:   []string{"ls FILE [--json] " + keyFlagsUsage},
		help: `List a backup's entries (type, mode, size, time, path) without restoring. It
needs K, as restore does, and authenticates the whole file first: it lists
nothing from a file that fails. --json prints the entries and a summary as one
JSON object.`,
		run: (*cli).cmdLs,
	},
	{
		name:    "verify",
		summary: "decrypt and check a whole backup, writing nothing",
		usage:   []string{"verify FILE [--json] " + keyFlagsUsage},
		help: `Decrypt and check a whole backup, with every rule a restore checks, writing
nothing: exit status 1, saying what is wrong, if any byte or entry is wrong.
Needs K, as restore does. --json prints a JSON summary.`,
		run: (*cli).cmdVerify,
	},
	{
		name:    "key export-age",
		summary: "export the age identity that decrypts every backup",
		usage:   []string{"key export-age [-o FILE [--force]] " + keyFlagsUsage},
		help: `Print the age identity that decrypts every backup (age -d -i FILE BACKUP), or
with -o write it to FILE, made new with mode 0600 (--force replaces FILE).`,
		run: (*cli).cmdExportAge,
	},
	{
		name:    "key rotate",
		summary: "realm set: replace the backup key under the same password",
		usage:   []string{"key rotate [--force] " + keyFlagsUsage},
		help: `Realm set: replace K by a new key under the same password; devices that know
the old set code follow; prints the new set code. Old backups stay readable with
the old key until deleted.`,
		run: (*cli).cmdKeyRotate,
	},
	{
		name:    "password change",
		summary: "change the vault password (the key stays the same)",
		usage:   []string{"password change [--new-password-file FILE] [--resume] [--force] " + keyFlagsUsage},
		help: `Change the vault password (K stays the same). With a realm set the new password
is put at every realm and committed only once every realm has it (--force: once
t have it, at a lower tolerance); until then both passwords work. --resume
finishes a change cut short here or on another device.`,
		run: (*cli).cmdPasswordChange,
	},
	{
		name:    "delete",
		summary: "erase the backup key from the vault for ever",
		usage:   []string{"delete [--yes] " + keyFlagsUsage},
		help: `Erase K from the vault (or every realm of the set) for ever. Asks you to type
"delete" (--yes for scripts).`,
		run: (*cli).cmdDelete,
	},
	{
		name:    "status",
		summary: "show the account, the pinned vault and its state",
		usage:   []string{"status [--offline] [--insecure]"},
		help: `Show the account, the pinned vault, and the vault's state (--offline: only what
the configuration holds).`,
		run: (*cli).cmdStatus,
	},
	{
		name:    "config show",
		summary: "show the configuration (never the token)",
		usage:   []string{"config show"},
		help: `Show what the configuration holds: mode, age recipient, server, whether a
token is set (never the token), provisioning key, account, limit, CA file,
release log, realms.`,
		run: (*cli).cmdConfigShow,
	},
	{
		name:    "config set",
		summary: "change the server, the token or the CA file",
		usage:   []string{"config set server URL", "config set token [TOKEN]", "config set ca FILE|none"},
		help: `Change a setting. A new server or token is checked with cofferd first (GET
/v1/account, which counts nothing): it must take the token and, in password
mode, name this configuration's account. ca FILE trusts FILE's certificates
(PEM), besides the system's, for TLS to cofferd; none stops. Nothing changes
when a check fails. The word after token is the token as given, even when
it begins with '-'. To move from the 64-digit key to a vault: init --password
--from-key.`,
		run: (*cli).cmdConfigSet,
	},
	{
		name:    "log pin",
		summary: "pin the release log's policy",
		usage:   []string{"log pin FILE [--url URL]"},
		help: `Pin the release log's policy in FILE (its origin, release key, witnesses,
quorum and max-age) for an existing account. From then on every vault of the
account must have its identity bundle and its release in that log, and neither
revoked. --url also reads the log at URL (its own address or a mirror) at every
contact, besides each vault's cofferd, so that no one host can hold back a
revocation ("" forgets it).`,
		run: (*cli).cmdLogPin,
	},
	{
		name:    "vault accept-new-identity",
		summary: "pin a vault whose identity keys changed",
		usage:   []string{"vault accept-new-identity [--yes] [--insecure]"},
		help: `The vault's identity keys changed (a new device, keys rotated): show the old and
new keys and where each is in the release log, and pin the new identity if you
confirm (--yes for scripts). An upgrade that keeps the keys needs none.`,
		run: (*cli).cmdVaultAccept,
	},
	{
		name:    "vault recover-rollback",
		summary: "after ROLLBACK: accept the vault's state on your word, new password",
		usage:   []string{"vault recover-rollback [--yes] [--new-password-file FILE] [--limit N] " + keyFlagsUsage},
		help: `After the vault's store was rolled back (commands stop with ROLLBACK): show
what the vault signs now and whether its operator declared the rollback, and
only on your word (typed, or --yes) accept that state and move the key to a NEW
password. If the rollback lost the key, --key or --key-file registers the
64-digit key again, if you kept it (--limit: that registration's attempt limit;
default the account's).`,
		run: (*cli).cmdRecoverRollback,
	},
	{
		name:    "realms",
		summary: "probe every realm of a realm set and show its health",
		usage:   []string{"realms [--insecure]"},
		help: `Probe every realm of a realm set (counting nothing) and show its health: per
realm reachable, operator, fingerprint, state, versions, tries left; for the set
whether it is recoverable, its tolerance, tries left, bounds.`,
		run: (*cli).cmdRealms,
	},
	{
		name:    "realms repair",
		summary: "move the key onto a new realm set",
		usage:   []string{"realms repair --realms FILE [--threshold t] [--limit N] [--force] " + keyFlagsUsage},
		help: `After recovering the key with the password, move it onto the set FILE lists
(replace or add realms), then delete it at realms left out, where reachable. A
realm that cannot be reached keeps its old share: rotate the key then.`,
		run: (*cli).cmdRealmsRepair,
	},
	{
		name:    "realms burn",
		summary: "clear a realm's stale record",
		usage:   []string{"realms burn NAME [--yes] [--register] " + keyFlagsUsage},
		help: `Clear a realm's stale record, one no password opens (a first registration cut
before t realms held it, a realm left out while down): only when its manifest
is known, fewer than its t listed realms may hold it (one that does not answer
counts as holding it) and it is not your current or a newer version. It asks
y/N (--yes for scripts), then spends up to L counted evaluations there, shown.
--register then registers your key there again.`,
		run: (*cli).cmdRealmsBurn,
	},
	{
		name:    "version",
		summary: "say what this coffer was built from",
		usage:   []string{"version"},
		help: `Print the version, the source revision (when the build recorded it) and the Go
version. Also: coffer --version.`,
		run: (*cli).cmdVersion,
	},
}

// usageHead and usageFoot frame the list of commands in `coffer help`.
const usageHead = `usage: coffer [--config FILE] COMMAND [flags] [args]
       coffer help [COMMAND]   coffer COMMAND --help   coffer --version

Commands:
`

const usageFoot = `
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

Passwords are read from the terminal without echo, or for scripts from --password-file FILE
or COFFER_PASSWORD (and --new-password-file or COFFER_NEW_PASSWORD); a 64-digit key from
the terminal without echo, --key-file FILE, COFFER_KEY, or --key (which other users of the
machine can read in the process list). At a terminal a wrong password is asked again,
with the tries left; a script gets one try. The configuration is
$XDG_CONFIG_HOME/coffer/config.json unless --config or COFFER_CONFIG says otherwise.

Exit status: 0 done (and for help), 1 failed, 2 a mistake on the command line, 3 a
backup made but incomplete. --json prints one JSON object on standard output
(README.md).
`

// globalFlags are flags every command takes, said once in the whole help.
var globalFlags = map[string]bool{"config": true}

// findCommand returns the command that args begin with (the longest name),
// and the arguments after its name.
func findCommand(args []string) (*command, []string) {
	var best *command
	n := 0
	for _, cmd := range commands {
		words := strings.Fields(cmd.name)
		if len(words) <= len(args) && len(words) > n && strings.Join(args[:len(words)], " ") == cmd.name {
			best, n = cmd, len(words)
		}
	}
	return best, args[n:]
}

// group are the commands named name or under it ("key": key export-age and
// key rotate; "realms": realms, realms repair and realms burn).
func group(name string) []*command {
	var g []*command
	for _, cmd := range commands {
		if cmd.name == name || strings.HasPrefix(cmd.name, name+" ") {
			g = append(g, cmd)
		}
	}
	return g
}

// printUsage prints the synopses of cmds as "usage: coffer …" lines.
func printUsage(w io.Writer, cmds []*command) {
	first := true
	for _, cmd := range cmds {
		for _, u := range cmd.usage {
			if first {
				fmt.Fprintf(w, "usage: coffer %s\n", u)
				first = false
			} else {
				fmt.Fprintf(w, "       coffer %s\n", u)
			}
		}
	}
}

// printWholeHelp is `coffer help`.
func printWholeHelp(w io.Writer) {
	fmt.Fprint(w, usageHead)
	for _, cmd := range commands {
		for _, u := range cmd.usage {
			fmt.Fprintf(w, "  %s\n", u)
		}
		fmt.Fprintf(w, "%s\n", indentBy(cmd.help, "        "))
	}
	fmt.Fprint(w, usageFoot)
}

// printCommandList is the short list shown after an unknown command.
func printCommandList(w io.Writer) {
	fmt.Fprintf(w, "usage: coffer [--config FILE] COMMAND [flags] [args]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-26s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, "\ncoffer help COMMAND says more.\n")
}

// printCommandHelp is `coffer help NAME` and `coffer NAME --help`: the
// synopses, what each does, and the flags of fs (nil: not known).
func printCommandHelp(w io.Writer, cmds []*command, fs *flag.FlagSet) {
	printUsage(w, cmds)
	for _, cmd := range cmds {
		fmt.Fprintf(w, "\n%s\n", indentBy(cmd.help, "  "))
	}
	if fs == nil {
		return
	}
	fmt.Fprintf(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, _ := flag.UnquoteUsage(f)
		switch name {
		case "":
		case "string":
			name = " VALUE"
		case "int", "uint":
			name = " N"
		default:
			name = " " + name
		}
		fmt.Fprintf(w, "  %s%s\n        %s\n", dashes(f.Name), name, f.Usage)
	})
}

// dashes writes a flag as the usage does: -o, -C; --force.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func indentBy(s, by string) string {
	return by + strings.ReplaceAll(s, "\n", "\n"+by)
}

// help is `coffer help [COMMAND...]`.
func (c *cli) help(args []string) error {
	if len(args) == 0 {
		printWholeHelp(c.stdout)
		return nil
	}
	name := strings.Join(args, " ")
	cmds := group(name)
	if len(cmds) == 0 {
		return usagef("no command %q", name)
	}
	if cmd, rest := findCommand(args); cmd != nil && len(rest) == 0 {
		c.commandHelp(cmd, c.flagsOf(cmd))
		return nil
	}
	printCommandHelp(c.stdout, cmds, nil)
	return nil
}

// commandHelp is one command's help with its flags fs, and the commands
// under it.
func (c *cli) commandHelp(cmd *command, fs *flag.FlagSet) {
	printCommandHelp(c.stdout, []*command{cmd}, fs)
	var more []string
	for _, sub := range group(cmd.name)[1:] {
		more = append(more, "coffer "+sub.name)
	}
	if len(more) > 0 {
		fmt.Fprintf(c.stdout, "\nSee also: %s.\n", strings.Join(more, ", "))
	}
}

// flagsOf returns the flags cmd defines: its run function, asked for help,
// defines them and returns at once.
func (c *cli) flagsOf(cmd *command) *flag.FlagSet {
	probe := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	probe.run1(context.Background(), cmd, []string{"--help"})
	return probe.fset
}

func (c *cli) cmdVersion(ctx context.Context, args []string) error {
	fset := c.flags("version")
	if err := parseNoArgs(fset, args); err != nil {
		return err
	}
	fmt.Fprint(c.stdout, buildinfo.Line("coffer"))
	return nil
}
