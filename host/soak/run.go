package soak

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/measure"
	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/protocol"
)

// accountToken is a cofferd account with its bearer token.
type accountToken struct {
	host.Account
	token string
}

// runner is one soak in progress.
type runner struct {
	cfg          Config
	fails        *failures
	tot          *totals
	stretch      *stretcher
	productSlots chan struct{}
	changes      *tokenBucket
	stop         chan struct{}
	halted       atomic.Bool

	vault     *vaultRunner
	dev       *host.StreamDevice
	srv       *host.Server
	stopServe func()
	url       string
	accounts  []accountToken
	base      *http.Transport
	pub       ed25519.PublicKey
	id        *protocol.Identity
	workers   []*worker
}

func (r *runner) stopped() bool { return r.halted.Load() }

// limitFor is the attempt limit an account registers with: the default
// for ordinary and product accounts, 3 for lockout accounts.
func (r *runner) limitFor(k clientKind) uint {
	if k == lockout {
		return 3
	}
	return protocol.DefaultLimit
}

// Run runs one soak and returns its report. An error means the soak could
// not be set up; what went wrong in the system under test is in the
// report's failures.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &runner{
		cfg: cfg, fails: newFailures(), tot: &totals{},
		stretch:      newStretcher(cfg.Stretch, cfg.ArgonSlots),
		productSlots: make(chan struct{}, 1),
		changes:      newTokenBucket(cfg.ChangeRate, 1),
		stop:         make(chan struct{}),
		vault: &vaultRunner{binary: cfg.VaultBinary, dir: cfg.StateDir, sock: filepath.Join(cfg.SocketDir, "v.sock"),
			flush: cfg.FlushLatency, maxLimit: protocol.DefaultLimit},
	}
	rep := &Report{Config: cfg, LoadBefore: loadAverage()}
	var err error
	if r.pub, err = r.vault.start(true); err != nil {
		return nil, err
	}
	defer r.vault.kill()
	if err := r.startCofferd(); err != nil {
		return nil, err
	}
	defer r.stopServe()
	defer func() {
		if r.base != nil {
			r.base.CloseIdleConnections()
		}
	}()

	cfg.Progress("setup: %d accounts (%d ordinary, %d lockout, %d product); registering with %s", cfg.Clients,
		cfg.Clients-cfg.LockoutAccounts-cfg.ProductClients, cfg.LockoutAccounts, cfg.ProductClients, cfg.Stretch)
	setupStart := time.Now()
	r.setup(ctx)
	rep.Setup = time.Since(setupStart)
	if n := r.fails.count(); n > 0 {
		rep.finish(r)
		return rep, nil
	}

	r.fails.setPhase("run")
	r.soak(ctx, rep)

	if cfg.afterRun != nil {
		if err := cfg.afterRun(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	r.fails.setPhase("final")
	r.verifyAll(ctx)
	r.restart(ctx, rep)
	rep.finish(r)
	return rep, nil
}

// soak runs every worker for the configured duration, watching the vault.
func (r *runner) soak(ctx context.Context, rep *Report) {
	rep.MetricsBefore = scrapeMetrics(r.url)
	rep.VaultBefore = r.vault.sample()
	before := r.counters()
	r.tot.recording.Store(true)
	cpu0 := measure.ProcessCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range r.workers {
		if w == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch w.acct.kind {
			case lockout:
				w.lockoutLoop(ctx)
			case product:
				w.productLoop(ctx)
			default:
				w.ordinaryLoop(ctx)
			}
		}()
	}
	mon := newMonitor(r)
	monDone := make(chan struct{})
	go func() { mon.watch(start, r.stop); close(monDone) }()
	select {
	case <-time.After(r.cfg.Duration):
	case <-ctx.Done():
	case <-mon.abort:
		r.fails.add("aborted", "-", "too many failures; stopping early")
	}
	// Every worker finishes the operation it is in: nothing is cut off,
	// so every reply is accounted for.
	r.halted.Store(true)
	close(r.stop)
	wg.Wait()
	rep.Elapsed = time.Since(start)
	r.tot.recording.Store(false)
	rep.Run = r.counters().minus(before)
	<-monDone
	rep.DriverCPU = measure.ProcessCPU() - cpu0
	rep.VaultAfter = r.vault.sample()
	rep.MetricsAfter = scrapeMetrics(r.url)
	rep.LoadAfter = loadAverage()
	rep.PeakRSS, rep.Samples = mon.peakRSS, mon.samples
}

// verifyAll checks every account with one more login, all at once.
func (r *runner) verifyAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range r.workers {
		if w == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.verify(ctx) }()
	}
	wg.Wait()
}

// tokenBucket hands out at most rate tokens a second, burst at once; take
// never waits.
type tokenBucket struct {
	mu          sync.Mutex
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, last: time.Now()}
}

func (b *tokenBucket) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
