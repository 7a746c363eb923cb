// Command coffer is Coffer's client: it makes and restores end-to-end
// encrypted backups, and keeps their key either as a 64-digit key the user
// writes down or behind a password in a Coffer vault or a realm set (any t
// of n vaults, protocol/REALMS.md).
//
//	coffer [-config FILE] COMMAND [flags] [args]
//
// Run `coffer help` for the commands (commands.go). The formats it writes
// are in client/SPEC.md.
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
	"github.com/cofferhsm/coffer/internal/buildinfo"
)

// cli is one run of the command, with everything it touches injectable for
// tests.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// terminal reads a line without echo from the user's terminal; nil
	// when there is none (tests, scripts).
	terminal func(prompt string) ([]byte, error)
	// ask reads an answer to a question, echoed, from the terminal; nil
	// when there is none.
	ask func(prompt string) (string, error)
	// progress says whether to draw progress bars on stderr.
	progress   bool
	httpClient *http.Client
	// caClient: httpClient was made for the configuration's CA (ca.go).
	caClient bool
	// logSource serves the release log instead of each cofferd (tests).
	logSource logcheck.Source
	// warnMu keeps warnings from realms' goroutines whole.
	warnMu sync.Mutex

	configPath string
	// fset is the flag set of the command being run (help lists its flags).
	fset *flag.FlagSet
}

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	c.terminal = ttyReader(c.stderr)
	c.ask = ttyAsker(c.stderr)
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
	version := top.Bool("version", false, "say what this coffer was built from")
	if err := top.Parse(args); errors.Is(err, flag.ErrHelp) {
		printWholeHelp(c.stdout)
		return 0
	} else if err != nil {
		fmt.Fprintf(c.stderr, "coffer: %v\n\n", err)
		printCommandList(c.stderr)
		return 2
	}
	if *version {
		fmt.Fprint(c.stdout, buildinfo.Line("coffer"))
		return 0
	}
	args = top.Args()
	if len(args) == 0 {
		printCommandList(c.stderr)
		return 2
	}
	if args[0] == "help" {
		if err := c.help(args[1:]); err != nil {
			fmt.Fprintf(c.stderr, "coffer help: %v\n\n", err)
			printCommandList(c.stderr)
			return 2
		}
		return 0
	}
	cmd, rest := findCommand(args)
	if cmd == nil {
		g := group(args[0])
		switch {
		case len(g) == 0:
			fmt.Fprintf(c.stderr, "coffer: unknown command %q\n\n", args[0])
			printCommandList(c.stderr)
			return 2
		case len(args) > 1 && isHelp(args[1]):
			printCommandHelp(c.stdout, g, nil)
			return 0
		case len(args) == 1:
			fmt.Fprintf(c.stderr, "coffer %s: which one?\n", args[0])
		default:
			fmt.Fprintf(c.stderr, "coffer %s: unknown command %q\n", args[0], args[1])
		}
		printUsage(c.stderr, g)
		return 2
	}
	err := c.run1(ctx, cmd, rest)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		c.commandHelp(cmd, c.fset)
		return 0
	}
	var ue errUsage
	if errors.As(err, &ue) {
		fmt.Fprintf(c.stderr, "coffer %s: %s\n", cmd.name, printable(ue.msg))
		printUsage(c.stderr, group(cmd.name))
		fmt.Fprintf(c.stderr, "(coffer help %s says more)\n", cmd.name)
		return 2
	}
	fmt.Fprintf(c.stderr, "coffer %s: %s\n", cmd.name, printable(strings.TrimPrefix(err.Error(), "client: ")))
	if ee := (errExit{}); errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// run1 runs one command of the table.
func (c *cli) run1(ctx context.Context, cmd *command, args []string) error {
	return cmd.run(c, ctx, args)
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help"
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

// flags is a subcommand's flag set; every one takes --config too. Its
// mistakes are said by run, once, with the command's usage.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("coffer "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.configPath, "config", c.configPath, "configuration file")
	c.fset = fs
	return fs
}

// parseNoArgs parses a command that takes flags only.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	rest, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	return nil
}

// printConfigHeader prints what every view of the configuration starts
// with (config show, status).
func (c *cli) printConfigHeader(cfg *client.Config, path string) {
	c.printf("configuration:    %s\n", client.QuoteName(path))
	c.printf("mode:             %s\n", cfg.Mode)
	c.printf("age recipient:    %s\n", cfg.AgeRecipient)
}

// parse parses flags anywhere among the arguments (coffer backup a b -o f)
// and returns the others. After "--" everything is an argument.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	return parseValueAfter(fs, args, "")
}

// parseValueAfter is parse for a command whose first argument word names a
// setting followed by its value (config set token TOKEN): the argument
// right after word is the value even when it begins with '-'. A token is
// not a flag, and reading it as one would print it in the error.
func parseValueAfter(fs *flag.FlagSet, args []string, word string) ([]string, error) {
	var flags, rest []string
	valueNext := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if valueNext || len(a) < 2 || a[0] != '-' {
			valueNext = word != "" && len(rest) == 0 && a == word
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name, _, withValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil && name != "h" && name != "help" {
			return nil, usagef("unknown flag %s", strings.SplitN(a, "=", 2)[0])
		}
		if f == nil || withValue {
			continue
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); errors.Is(err, flag.ErrHelp) {
		return nil, err
	} else if err != nil {
		return nil, usagef("%v", err)
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
	if err == nil {
		c.useCA(cfg.CA)
	}
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
