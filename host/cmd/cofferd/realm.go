package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/host/state"
)

// defaultDSN is the state of one host: an SQLite file in the working folder.
const defaultDSN = "sqlite:cofferd.db"

// stateDir is the folder beside the SQLite file of dsn, where cofferd
// keeps its other files (realm items, rollback declarations) by default;
// the working folder for any other store.
func stateDir(dsn string) string {
	if kind, p, err := state.ParseDSN(dsn); err == nil && kind == "sqlite" {
		p, _, _ = strings.Cut(p, "?")
		return filepath.Dir(p)
	}
	return "."
}

// redactDSN hides a password in a DSN, for logs and errors: in a URL's
// user info and its query (?password=…), and in libpq key=value form
// (password=… or password='…'). A DSN it cannot read is hidden whole.
func redactDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(a DSN that does not parse, not shown)"
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.HasPrefix(dsn, "sqlite:") || strings.HasPrefix(dsn, "memory:") {
		return dsn
	}
	return libpqPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// libpqPassword is a password=value pair of a key=value DSN: a quoted
// value (with \' and \\ escapes) or a bare one.
var libpqPassword = regexp.MustCompile(`((?:^|\s)password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s]*)`)

// openStore opens the store of a command; an unmigrated one says what to run.
func openStore(ctx context.Context, dsn string) (state.Store, error) {
	st, err := state.Open(ctx, dsn)
	if errors.Is(err, state.ErrSchema) {
		return nil, fmt.Errorf("%s: %w: run `cofferd migrate -db %s` first", redactDSN(dsn), err, redactDSN(dsn))
	}
	if err != nil {
		return nil, fmt.Errorf("-db %s: %w", redactDSN(dsn), err)
	}
	return st, nil
}

func dbFlag(fs *flag.FlagSet) *string {
	return fs.String("db", defaultDSN, "the realm's state database (sqlite:PATH, postgres://…, memory:); the daemon's -db")
}

// subcommand parses a command's flags and opens its store.
type subcommand struct {
	fs   *flag.FlagSet
	dsn  *string
	help string
}

func newSubcommand(name, help string) *subcommand {
	fs := flag.NewFlagSet("cofferd "+name, flag.ContinueOnError)
	return &subcommand{fs: fs, dsn: dbFlag(fs), help: help}
}

// run parses args, checks the count of positional arguments, opens the
// store and runs fn.
func (c *subcommand) run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, nargs int, fn func(st state.Store, pos []string) error) error {
	pos, err := parse(c.fs, args, getenv, stdout, c.help)
	if err != nil {
		return err
	}
	if len(pos) != nargs {
		return fmt.Errorf("%s takes %d argument(s), got %d; %w", c.fs.Name(), nargs, len(pos), errUsage)
	}
	st, err := openStore(ctx, *c.dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st, pos)
}

// accountUsage are the account commands' usage lines, by command.
var accountUsage = map[string]string{
	"add":     "usage: cofferd account add [-db DSN] [-device NAME] NAME\n\nMakes an account and prints its bearer token, once. It is placed on a device at its first request (or on -device NAME now).\nNames starting f. are the users a messenger names on the front listener (-front-listen): refused here.\n",
	"list":    "usage: cofferd account list [-db DSN]\n\nLists the accounts, with their devices (- for none yet).\n",
	"remove":  "usage: cofferd account remove [-db DSN] NAME\n\nRemoves an account; its vault record stays (only its owner can delete it). Hosts stop accepting its token within a second.\n",
	"unplace": "usage: cofferd account unplace [-db DSN] NAME\n\nTakes an account off its device, to move it: its next request places it on another device, where its user re-registers or repairs it through their realms.\n",
}

func account(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd, c, err := commandOf("account", args, accountUsage, stdout)
	if err != nil {
		return err
	}
	var device *string
	if cmd == "add" {
		device = c.fs.String("device", "", "place the account on this device now (default: at its first request, on the device with the most room)")
	}
	switch cmd {
	case "add":
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			a, token, err := host.NewAccount(ctx, st, pos[0], *device)
			if err != nil {
				return err
			}
			dev := a.Device
			if dev == "" {
				dev = "(placed at its first request)"
			}
			fmt.Fprintf(stdout, "account %s\n  user id %s\n  device  %s\n  token   %s\n\nThe token is shown only this once: cofferd keeps only its SHA-256.\nClients send it as: Authorization: Bearer %s\n",
				a.Name, hex.EncodeToString(a.UserID), dev, token, token)
			return nil
		})
	case "list":
		return c.run(ctx, args[1:], getenv, stdout, 0, func(st state.Store, _ []string) error {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUSER ID\tDEVICE\tCREATED")
			after := ""
			for {
				page, err := st.ListAccounts(ctx, after, 1000)
				if err != nil {
					return err
				}
				for _, a := range page {
					dev := a.Device
					if dev == "" {
						dev = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, hex.EncodeToString(a.UserID), dev, a.Created.Format(time.RFC3339))
				}
				if len(page) < 1000 {
					return tw.Flush()
				}
				after = page[len(page)-1].Name
			}
		})
	case "remove":
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			if err := st.RemoveAccount(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "removed account %s (its vault record stays; only its owner can delete it)\n", pos[0])
			return nil
		})
	default: // unplace
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			a, err := st.AccountByName(ctx, pos[0])
			if err != nil {
				return err
			}
			if err := st.Unplace(ctx, pos[0]); err != nil {
				return err
			}
			from := a.Device
			if from == "" {
				from = "no device"
			}
			fmt.Fprintf(stdout, "account %s taken off %s: its next request places it on another device, where its user\n"+
				"re-registers or repairs it through their realms (its record on %s stays until that device is retired)\n", pos[0], from, from)
			return nil
		})
	}
}

// commandOf finds the command args name among a group's (kind: account,
// device, host), and makes its subcommand; help asked for prints the usage.
func commandOf(kind string, args []string, usages map[string]string, stdout io.Writer) (string, *subcommand, error) {
	if len(args) == 0 {
		return "", nil, fmt.Errorf("no %s command; %w", kind, errUsage)
	}
	cmd := args[0]
	help, ok := usages[cmd]
	if !ok {
		if isHelp(cmd) {
			fmt.Fprint(stdout, usage)
			return "", nil, errHelpShown
		}
		return "", nil, fmt.Errorf("unknown %s command %q; %w", kind, cmd, errUsage)
	}
	return cmd, newSubcommand(kind+" "+cmd, help), nil
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

// evacuateBatch is how many accounts one transaction of device evacuate
// takes off: small enough that the hosts' placements and route lookups
// barely wait for it.
const evacuateBatch = 1000

// deviceUsage are the device commands' usage lines, by command.
var deviceUsage = map[string]string{
	"list":     "usage: cofferd device list [-db DSN] [-json]\n\nThe realm's devices: the host each is on, its state, accounts placed, records and capacity (from its vault's signed status, capped by the operator's limit), anchor writes and budget, health and when its host last saw it.\n",
	"drain":    "usage: cofferd device drain [-db DSN] NAME\n\nThe device takes no new accounts; those on it are served as before.\n",
	"activate": "usage: cofferd device activate [-db DSN] NAME\n\nThe device takes new accounts again (not a retired one).\n",
	"retire":   "usage: cofferd device retire [-db DSN] NAME\n\nTakes the device out of the realm for good. Refused while accounts are placed on it: drain it, evacuate it (or move each: cofferd account unplace NAME), then retire.\n",
	"evacuate": "usage: cofferd device evacuate [-db DSN] NAME\n\nTakes every account off a drained device, a thousand to a transaction: each is placed at its next request on another device, where its user re-registers or repairs through their realms. Refused for an active device.\n",
	"limits":   "usage: cofferd device limits [-db DSN] [-capacity N] [-anchor-budget N] NAME\n\nSets how many records the device may hold at most (0: 20 million; its vault's signed estimate counts where lower) and how many anchor writes it may reach (0: no budget); a limit not given keeps its value.\n",
}

func device(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd, c, err := commandOf("device", args, deviceUsage, stdout)
	if err != nil {
		return err
	}
	switch cmd {
	case "list":
		asJSON := c.fs.Bool("json", false, "print JSON")
		return c.run(ctx, args[1:], getenv, stdout, 0, func(st state.Store, _ []string) error {
			devs, err := st.Devices(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if devs == nil {
					devs = []state.Device{}
				}
				return enc.Encode(devs)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tHOST\tSTATE\tACCOUNTS\tRECORDS\tCAPACITY\tANCHOR WRITES/BUDGET\tHEALTHY\tSEEN")
			for _, d := range devs {
				budget := "-"
				if d.AnchorBudget > 0 {
					budget = strconv.FormatUint(d.AnchorBudget, 10)
				}
				seen := "never"
				if !d.Seen.IsZero() {
					seen = d.Seen.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d/%s\t%v\t%s\n", d.Name, d.Host, d.State, d.Accounts, d.Records, d.PlacementCapacity(), d.AnchorWrites, budget, d.Healthy, seen)
			}
			return tw.Flush()
		})
	case "limits":
		capacity := c.fs.Uint64("capacity", 0, "records the device may hold at most (0: 20 million); its vault's signed estimate counts where lower")
		budget := c.fs.Uint64("anchor-budget", 0, "anchor writes (RPMB wear) the device may reach before it takes no new account (0: no budget)")
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			// A limit not given keeps its value.
			set := map[string]bool{}
			c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			if !set["capacity"] && !set["anchor-budget"] {
				return fmt.Errorf("give -capacity, -anchor-budget or both; %w", errUsage)
			}
			d, err := st.Device(ctx, pos[0])
			if err != nil {
				return err
			}
			if !set["capacity"] {
				*capacity = d.Capacity
			}
			if !set["anchor-budget"] {
				*budget = d.AnchorBudget
			}
			if err := st.SetDeviceLimits(ctx, pos[0], *capacity, *budget); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "device %s: capacity %d, anchor budget %d (0: default)\n", pos[0], *capacity, *budget)
			return nil
		})
	case "evacuate":
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			total := 0
			for after := ""; ; {
				n, next, err := st.UnplaceFrom(ctx, pos[0], after, evacuateBatch)
				total += n
				if err != nil {
					if total > 0 {
						err = fmt.Errorf("%w (after %d accounts were taken off; run it again)", err, total)
					}
					return err
				}
				if after = next; next == "" {
					break
				}
			}
			fmt.Fprintf(stdout, "device %s: accounts taken off: %d. Each is placed at its next request on another device,\n"+
				"where its user re-registers or repairs through their realms. Then: cofferd device retire %s\n", pos[0], total, pos[0])
			return nil
		})
	default:
		to := map[string]state.DeviceState{"drain": state.Draining, "activate": state.Active, "retire": state.Retired}[cmd]
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			if err := st.SetDeviceState(ctx, pos[0], to); err != nil {
				if to == state.Retired && errors.Is(err, state.ErrDeviceState) {
					return fmt.Errorf("%w\nTo retire it: cofferd device drain %s; cofferd device evacuate %s; then retire it.\n"+
						"Its users re-register or repair through their realms on the device they are placed on next", err, pos[0], pos[0])
				}
				return err
			}
			fmt.Fprintf(stdout, "device %s is %s (every host sees it within a second)\n", pos[0], to)
			return nil
		})
	}
}

// hostUsage are the host commands' usage lines, by command.
var hostUsage = map[string]string{
	"list":   "usage: cofferd host list [-db DSN]\n\nThe realm's hosts: peer URL, last heartbeat, peer certificate key (SHA-256 of its public key), whether removed, and its devices' accounts.\n",
	"remove": "usage: cofferd host remove [-db DSN] [-force] NAME\n\nRemoves a host from the realm: its peer certificate is revoked (the other hosts refuse it within a second), its devices' users get 503 \"host removed\". Refused while its devices hold accounts, unless -force. A host with a peer certificate comes back only with a new one (cofferd peer cert) and a restart; a host without one (a realm of one host), with a restart.\n",
}

func hostCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd, c, err := commandOf("host", args, hostUsage, stdout)
	if err != nil {
		return err
	}
	held := func(st state.Store) (map[string]uint64, error) {
		devs, err := st.Devices(ctx)
		if err != nil {
			return nil, err
		}
		m := map[string]uint64{}
		for _, d := range devs {
			m[d.Host] += d.Accounts
		}
		return m, nil
	}
	switch cmd {
	case "list":
		return c.run(ctx, args[1:], getenv, stdout, 0, func(st state.Store, _ []string) error {
			hs, err := st.Hosts(ctx)
			if err != nil {
				return err
			}
			accounts, err := held(st)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPEER URL\tSEEN\tPEER KEY SHA-256\tREMOVED\tACCOUNTS")
			for _, h := range hs {
				seen, key, url := "never", "-", h.PeerURL
				if !h.Seen.IsZero() {
					seen = h.Seen.UTC().Format(time.RFC3339)
				}
				if len(h.PeerKey) > 0 {
					key = hex.EncodeToString(h.PeerKey)
				}
				if url == "" {
					url = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%d\n", h.Name, url, seen, key, h.Removed, accounts[h.Name])
			}
			return tw.Flush()
		})
	default:
		force := c.fs.Bool("force", false, "remove it even though its devices hold accounts (their users get 503 until the host comes back)")
		return c.run(ctx, args[1:], getenv, stdout, 1, func(st state.Store, pos []string) error {
			accounts, err := held(st)
			if err != nil {
				return err
			}
			if n := accounts[pos[0]]; n > 0 && !*force {
				return fmt.Errorf("host %s: its devices hold %d accounts, whose users would get 503; move them first (cofferd device drain, cofferd device evacuate), or use -force", pos[0], n)
			}
			if err := st.RemoveHost(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "host %s removed: its peer certificate is refused by every host within a second, its devices serve nobody.\n"+
				"To bring it back: if it has a peer certificate, issue it a new one (cofferd peer cert) and restart it with it; if not, restart it.\n", pos[0])
			return nil
		})
	}
}

const migrateUsage = `usage: cofferd migrate [-db DSN] [-import-accounts FILE -host NAME [-default-device NAME]]

Creates the state database, or brings its schema up to this cofferd's; run it
once per realm before starting its hosts, and after each upgrade. With
-import-accounts, it then imports the accounts of a JSON accounts file (the
-accounts file of cofferd before its state moved to a database): it registers
the devices the file names, and the default device, under -host (the -host the
daemon will run with), and places the accounts on no device on the default
device (vault0 unless -default-device: the old cofferd's first -vault).
`

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("cofferd migrate", flag.ContinueOnError)
	dsn := dbFlag(fs)
	importFile := fs.String("import-accounts", "", "a JSON accounts file to import (default: none)")
	hostName := fs.String("host", "", "with -import-accounts: the -host of the cofferd that serves the file's devices (required)")
	defaultDevice := fs.String("default-device", "vault0", "with -import-accounts: the device of the accounts on none (the old cofferd's first -vault)")
	pos, err := parse(fs, args, getenv, stdout, migrateUsage)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected %q; %w", pos[0], errUsage)
	}
	if *importFile != "" && *hostName == "" {
		return fmt.Errorf("-import-accounts needs -host NAME, under which it registers the file's devices; %w", errUsage)
	}
	from, to, err := state.Migrate(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", redactDSN(*dsn), err)
	}
	if from == to {
		fmt.Fprintf(stdout, "%s: schema version %d, up to date\n", redactDSN(*dsn), to)
	} else {
		fmt.Fprintf(stdout, "%s: schema version %d → %d\n", redactDSN(*dsn), from, to)
	}
	if *importFile == "" {
		return nil
	}
	st, err := openStore(ctx, *dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := state.ImportAccountsJSON(ctx, st, *importFile, *hostName, *defaultDevice)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d accounts from %s\n", n, *importFile)
	return nil
}

const peerUsage = `usage: cofferd peer ca -out DIR
       cofferd peer cert -ca DIR -host NAME -out DIR

The hosts of a realm forward to each other over mutual TLS with certificates
from the realm's own CA. ` + "`peer ca`" + ` makes it (DIR/ca.crt, DIR/ca.key: keep
the key off the hosts); ` + "`peer cert`" + ` issues a host's certificate into
DIR/NAME.crt, DIR/NAME.key and DIR/ca.crt, for -peer-cert, -peer-key and
-peer-ca. NAME is the host's -host.
`

func peer(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no peer command; %w", errUsage)
	}
	cmd := args[0]
	if isHelp(cmd) {
		fmt.Fprint(stdout, peerUsage)
		return errHelpShown
	}
	if cmd != "ca" && cmd != "cert" {
		return fmt.Errorf("unknown peer command %q; %w", cmd, errUsage)
	}
	fs := flag.NewFlagSet("cofferd peer "+cmd, flag.ContinueOnError)
	out := fs.String("out", "", "folder to write to (created; files are never overwritten)")
	var caDir, name *string
	if cmd == "cert" {
		caDir = fs.String("ca", "", "the CA's folder (cofferd peer ca -out)")
		name = fs.String("host", "", "the host's name: its -host")
	}
	pos, err := parse(fs, args[1:], getenv, stdout, peerUsage)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("unexpected %q; %w", pos[0], errUsage)
	}
	if *out == "" {
		return fmt.Errorf("cofferd peer %s needs -out DIR; %w", cmd, errUsage)
	}
	if cmd == "ca" {
		if err := host.WritePeerCA(*out, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "peer CA in %s: %s (give it to every host as -peer-ca) and %s (keep it off the hosts)\n",
			*out, filepath.Join(*out, host.PeerCACert), filepath.Join(*out, host.PeerCAKey))
		return nil
	}
	if *caDir == "" || *name == "" {
		return fmt.Errorf("cofferd peer cert needs -ca DIR and -host NAME; %w", errUsage)
	}
	cert, key, ca, err := host.WritePeerCert(*caDir, *name, *out, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "host %s: -peer-cert %s -peer-key %s -peer-ca %s\n", *name, cert, key, ca)
	return nil
}
