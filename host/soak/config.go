package soak

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/protocol"
)

// Config describes one soak. Zero values take the defaults shown.
type Config struct {
	Duration        time.Duration // how long the clients run: 10 min
	Clients         int           // concurrent clients, one account each: 200
	ProductClients  int           // of which use the product client library (client/): 2 (negative: none)
	LockoutAccounts int           // of which are driven to lockout, again and again: 2 (negative: none)

	// cofferd's bounds. LoginRate is login starts per second per account
	// (negative: no limit; 0: 2/s, so that the rate limit's 429 is met);
	// the others default to cofferd's defaults (Queue negative: none
	// waits).
	LoginRate  float64
	LoginBurst int
	Queue      int
	InFlight   int

	FlushLatency time.Duration // added to every store flush of the vault: 2 ms (as eMMC might take)
	Stretch      Stretch       // the protocol clients' Argon2id: SPEC.md's
	ArgonSlots   int           // Argon2id computations at once for the protocol clients: 2 (the product clients have one more)
	ChangeRate   float64       // password changes per second, over all ordinary clients: 0.2
	WrongShare   float64       // share of wrong guesses among the ordinary clients' operations: 0.3
	LockoutPause time.Duration // a lockout account waits this long after each lockout: 10 s
	ProductThink time.Duration // a product client waits this long between operations: 2 s

	// VaultBinary is the softvault command, run as its own process (so its
	// memory and CPU are its own, and it can be killed); "" runs the vault
	// in this process and restarts it gracefully.
	VaultBinary string
	StateDir    string // the vault's state folder; required
	SocketDir   string // where its unix socket goes (paths are short); required

	Progress      func(format string, args ...any) // progress lines; nil: none
	ProgressEvery time.Duration                    // 1 min

	// Tests of the soak itself: called with the state folder after the
	// timed run (no request in flight) and while the vault is down for
	// its restart.
	afterRun, beforeRestart func(stateDir string) error
}

// Stretch is an Argon2id parameter set (passes, memory in KiB, lanes).
type Stretch struct {
	Passes, MemoryKiB uint32
	Lanes             uint8
}

// SpecStretch is protocol/SPEC.md's key stretch, the only one real records use.
var SpecStretch = Stretch{Passes: protocol.Argon2idPasses, MemoryKiB: protocol.Argon2idMemoryKiB, Lanes: protocol.Argon2idLanes}

func (s Stretch) String() string {
	return fmt.Sprintf("Argon2id t=%d m=%d KiB p=%d", s.Passes, s.MemoryKiB, s.Lanes)
}

func (c *Config) setDefaults() {
	setDur(&c.Duration, 10*time.Minute)
	setInt(&c.Clients, 200)
	if c.ProductClients == 0 {
		c.ProductClients = 2
	}
	if c.LockoutAccounts == 0 {
		c.LockoutAccounts = 2
	}
	c.ProductClients, c.LockoutAccounts = max(c.ProductClients, 0), max(c.LockoutAccounts, 0)
	if c.LoginRate == 0 {
		c.LoginRate = 2
	}
	if c.LoginRate < 0 {
		c.LoginRate = 0 // cofferd: no limit
	}
	setInt(&c.LoginBurst, host.DefaultLoginBurst)
	if c.Queue == 0 {
		c.Queue = host.DefaultQueue
	}
	setInt(&c.InFlight, host.DefaultInFlight)
	setDur(&c.FlushLatency, 2*time.Millisecond)
	if c.Stretch == (Stretch{}) {
		c.Stretch = SpecStretch
	}
	setInt(&c.ArgonSlots, 2)
	if c.ChangeRate == 0 {
		c.ChangeRate = 0.2
	}
	if c.WrongShare == 0 {
		c.WrongShare = 0.3
	}
	setDur(&c.LockoutPause, 10*time.Second)
	setDur(&c.ProductThink, 2*time.Second)
	setDur(&c.ProgressEvery, time.Minute)
	if c.Progress == nil {
		c.Progress = func(string, ...any) {}
	}
}

func (c *Config) check() error {
	if c.StateDir == "" || c.SocketDir == "" {
		return fmt.Errorf("soak: StateDir and SocketDir are required")
	}
	if c.ProductClients+c.LockoutAccounts > c.Clients {
		return fmt.Errorf("soak: %d product clients and %d lockout accounts do not fit in %d clients",
			c.ProductClients, c.LockoutAccounts, c.Clients)
	}
	return nil
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n <= 0 {
		*n = def
	}
}

// FromEnv overrides c with the COFFER_SOAK_* variables that are set:
// DURATION, CLIENTS, PRODUCT_CLIENTS, LOCKOUT_ACCOUNTS, LOGIN_RATE (cofferd's
// syntax: 2/s, 120/m, 0 for none), LOGIN_BURST, QUEUE, INFLIGHT,
// FLUSH_LATENCY, ARGON_SLOTS, CHANGE_RATE (per second), WRONG_SHARE,
// LOCKOUT_PAUSE, PRODUCT_THINK, VAULT (the softvault binary).
func (c *Config) FromEnv() error {
	var errs []error
	env := func(name string, parse func(string) error) {
		if v := os.Getenv("COFFER_SOAK_" + name); v != "" {
			if err := parse(v); err != nil {
				errs = append(errs, fmt.Errorf("COFFER_SOAK_%s=%q: %w", name, v, err))
			}
		}
	}
	dur := func(d *time.Duration) func(string) error {
		return func(s string) (err error) { *d, err = time.ParseDuration(s); return err }
	}
	integer := func(n *int) func(string) error {
		return func(s string) (err error) { *n, err = strconv.Atoi(s); return err }
	}
	float := func(f *float64) func(string) error {
		return func(s string) (err error) { *f, err = strconv.ParseFloat(s, 64); return err }
	}
	env("DURATION", dur(&c.Duration))
	env("CLIENTS", integer(&c.Clients))
	env("PRODUCT_CLIENTS", integer(&c.ProductClients))
	env("LOCKOUT_ACCOUNTS", integer(&c.LockoutAccounts))
	env("LOGIN_RATE", func(s string) error {
		r, err := host.ParseRate(s)
		if r == 0 {
			r = -1 // none
		}
		c.LoginRate = r
		return err
	})
	env("LOGIN_BURST", integer(&c.LoginBurst))
	env("QUEUE", integer(&c.Queue))
	env("INFLIGHT", integer(&c.InFlight))
	env("FLUSH_LATENCY", dur(&c.FlushLatency))
	env("ARGON_SLOTS", integer(&c.ArgonSlots))
	env("CHANGE_RATE", float(&c.ChangeRate))
	env("WRONG_SHARE", float(&c.WrongShare))
	env("LOCKOUT_PAUSE", dur(&c.LockoutPause))
	env("PRODUCT_THINK", dur(&c.ProductThink))
	env("VAULT", func(s string) error { c.VaultBinary = s; return nil })
	if len(errs) > 0 {
		return fmt.Errorf("soak: %v", errs)
	}
	return nil
}
