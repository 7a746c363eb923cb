package soak

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/measure"
	"github.com/cofferhsm/coffer/protocol"
)

// Report is what one soak measured and found.
type Report struct {
	Config                Config
	Setup, Elapsed        time.Duration
	LoadBefore, LoadAfter string

	// Run counts what the clients did during the timed run; All adds
	// the setup and the final checks.
	Run, All counters
	Latency  map[protocol.Type]latency // during the timed run

	// Guesses and confirmations, from the accounts' models.
	KE1Answered, KE1Lost, Confirmed, ConfirmLost, LockedReceipts uint64
	Accounts, AccountsMatched                                    int
	SumAnswered, SumVaultAttempts                                uint64
	SumConfirmed, SumVaultSuccesses                              uint64

	// The vault.
	MetricsBefore, MetricsAfter          metricsSnapshot
	VaultBefore, VaultAfter, VaultAtKill procSample
	PeakRSS                              int64
	Samples                              int
	SeqAtKill, AnchorAtKill              uint64
	SeqAfterRestart, AnchorAfterRestart  uint64
	StoreBytes                           int64
	DriverCPU                            time.Duration

	// The clients' Argon2id.
	ArgonRuns, ArgonHits int64
	ArgonTime            time.Duration

	Failures        int64
	FailureClasses  []string
	FirstFailures   []string
	VaultInProcess  bool
	MaxProcs        int
	StretchDescribe string
}

// counters are the clients' totals at one moment.
type counters struct {
	ops                                 opCounts
	answered                            map[protocol.Type]int64
	rateLimited, unavailable, vaultBusy int64
	wrongFinishes, failed               int64
}

// counters adds up every worker's operations and the meters' totals. Call
// it while no worker runs.
func (r *runner) counters() counters {
	c := counters{answered: map[protocol.Type]int64{}}
	for _, w := range r.workers {
		if w != nil {
			c.ops.add(w.ops)
		}
	}
	for t := range r.tot.answered {
		if n := r.tot.answered[t].Load(); n > 0 {
			c.answered[protocol.Type(t)] = n
		}
	}
	c.rateLimited, c.unavailable, c.vaultBusy = r.tot.rateLimited.Load(), r.tot.unavailable.Load(), r.tot.vaultBusy.Load()
	c.wrongFinishes, c.failed = r.tot.wrongFinishes.Load(), r.tot.failed.Load()
	return c
}

// minus is c − o.
func (c counters) minus(o counters) counters {
	d := counters{answered: map[protocol.Type]int64{}}
	d.ops = c.ops
	d.ops.add(opCounts{-o.ops.restores, -o.ops.releases, -o.ops.wrong, -o.ops.changes, -o.ops.lockouts, -o.ops.registrations, -o.ops.busyWaits})
	for t, n := range c.answered {
		d.answered[t] = n - o.answered[t]
	}
	d.rateLimited, d.unavailable, d.vaultBusy = c.rateLimited-o.rateLimited, c.unavailable-o.unavailable, c.vaultBusy-o.vaultBusy
	d.wrongFinishes, d.failed = c.wrongFinishes-o.wrongFinishes, c.failed-o.failed
	return d
}

type latency struct {
	n             int
	p50, p99, max time.Duration
}

// finish gathers the workers' counts and the accounts' accounting.
func (rep *Report) finish(r *runner) {
	rep.All = r.counters()
	lat := map[protocol.Type][]time.Duration{}
	for _, w := range r.workers {
		if w == nil {
			continue
		}
		for t, d := range w.meter.stats.lat {
			lat[t] = append(lat[t], d...)
		}
		a := w.acct
		a.mu.Lock()
		rep.KE1Answered += a.answered
		rep.KE1Lost += a.lost
		rep.Confirmed += a.confirmed
		rep.ConfirmLost += a.lostConfirms
		rep.LockedReceipts += a.lockedSeen
		a.mu.Unlock()
		t := a.tally()
		rep.Accounts++
		if t.ok {
			rep.AccountsMatched++
		} else {
			r.fails.add("accounting", a.name, "the vault's last totals %d/%d, the driver's %d (+%d lost)/%d (+%d lost)",
				t.vaultAttempts, t.vaultSuccesses, t.answered, t.lost, t.confirmed, t.lostConfirms)
		}
		rep.SumAnswered += t.answered
		rep.SumVaultAttempts += t.vaultAttempts
		rep.SumConfirmed += t.confirmed
		rep.SumVaultSuccesses += t.vaultSuccesses
	}
	rep.Latency = map[protocol.Type]latency{}
	for t, ds := range lat {
		p50, p99 := measure.Percentiles(ds)
		l := latency{n: len(ds), p50: p50, p99: p99}
		for _, d := range ds {
			l.max = max(l.max, d)
		}
		rep.Latency[t] = l
	}
	rep.ArgonRuns, rep.ArgonHits, rep.ArgonTime = r.stretch.computed.Load(), r.stretch.hits.Load(), time.Duration(r.stretch.busy.Load())
	rep.Failures = r.fails.count()
	rep.FailureClasses, rep.FirstFailures = r.fails.summary()
	rep.VaultInProcess = r.cfg.VaultBinary == ""
	rep.MaxProcs = runtime.GOMAXPROCS(0)
	rep.StretchDescribe = r.cfg.Stretch.String()
}

// String is the summary table.
func (rep *Report) String() string {
	var b strings.Builder
	c := rep.Config
	secs := rep.Elapsed.Seconds()
	per := func(n float64) string {
		if secs == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f/s", n/secs)
	}
	row := func(name, value string, more ...string) {
		fmt.Fprintf(&b, "  %-34s %-16s %s\n", name, value, strings.Join(more, " "))
	}
	fmt.Fprintf(&b, "soak-host: %s of %d clients (%d ordinary, %d lockout, %d product) through cofferd to a software vault%s\n",
		rep.Elapsed.Round(time.Second), c.Clients, c.Clients-c.LockoutAccounts-c.ProductClients, c.LockoutAccounts, c.ProductClients,
		map[bool]string{true: " in this process", false: " process"}[rep.VaultInProcess])
	fmt.Fprintf(&b, "  setup %s; GOMAXPROCS %d; load average before %q, after %q\n", rep.Setup.Round(time.Second), rep.MaxProcs, rep.LoadBefore, rep.LoadAfter)
	fmt.Fprintf(&b, "  cofferd: login rate %s/account, burst %d, queue %d, in flight %d; vault flush latency %s; clients' stretch %s\n",
		rateText(c.LoginRate), c.LoginBurst, c.Queue, c.InFlight, c.FlushLatency, rep.StretchDescribe)

	b.WriteString("\noperations completed during the timed run\n")
	confirmedRun := float64(rep.Run.ops.restores + rep.Run.ops.changes)
	row("logins confirmed (restores+changes)", fmt.Sprint(rep.Run.ops.restores+rep.Run.ops.changes), per(confirmedRun))
	row("  of which with a release command", fmt.Sprint(rep.Run.ops.releases))
	row("wrong guesses", fmt.Sprint(rep.Run.ops.wrong), per(float64(rep.Run.ops.wrong)))
	row("password changes", fmt.Sprint(rep.Run.ops.changes))
	row("lockouts (key erased, shown locked)", fmt.Sprint(rep.Run.ops.lockouts))
	row("registrations", fmt.Sprint(rep.Run.ops.registrations))

	b.WriteString("\nexchanges answered (HTTP 200) during the timed run; latency as the driver saw it, and from cofferd's histogram\n")
	for _, t := range []protocol.Type{protocol.TypeLoginStart, protocol.TypeLoginFinish, protocol.TypeSession,
		protocol.TypeRegisterStart, protocol.TypeRegisterFinish, protocol.TypeStatus, protocol.TypeIdentity} {
		l := rep.Latency[t]
		if l.n == 0 {
			continue
		}
		row(t.String(), fmt.Sprint(rep.Run.answered[t]), fmt.Sprintf("driver p50 %-8s p99 %-8s max %-8s",
			ms(l.p50), ms(l.p99), ms(l.max)), cofferdQuantiles(rep, t))
	}
	row("KE3s refused (wrong guesses)", fmt.Sprint(rep.Run.wrongFinishes))

	b.WriteString("\nbackpressure during the timed run (explicit only), and failures over everything\n")
	row("HTTP 429 (login rate)", fmt.Sprint(rep.Run.rateLimited))
	row("HTTP 503 (queue, disconnected)", fmt.Sprint(rep.Run.unavailable),
		fmt.Sprintf("cofferd: queue_full %.0f, queue_timeout %.0f, disconnected %.0f",
			delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_device_failures_total", `reason="queue_full"`),
			delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_device_failures_total", `reason="queue_timeout"`),
			delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_device_failures_total", `reason="disconnected"`)))
	row("vault busy (code 8)", fmt.Sprint(rep.Run.vaultBusy))
	row("client waits on backpressure", fmt.Sprint(rep.Run.ops.busyWaits))
	row("exchanges not explicit (failures)", fmt.Sprint(rep.All.failed),
		fmt.Sprintf("cofferd: timeout %.0f, error %.0f", delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_device_failures_total", `reason="timeout"`),
			delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_device_failures_total", `reason="error"`)))
	row("failures, all kinds", fmt.Sprint(rep.Failures))

	b.WriteString("\naccounting (whole run, final checks and restart included)\n")
	row("KE1s answered with a receipt", fmt.Sprint(rep.KE1Answered), fmt.Sprintf("lost replies %d", rep.KE1Lost))
	row("locked receipts (nothing counted)", fmt.Sprint(rep.LockedReceipts))
	row("confirmations answered", fmt.Sprint(rep.Confirmed), fmt.Sprintf("lost replies %d", rep.ConfirmLost))
	row("accounts whose totals match", fmt.Sprintf("%d of %d", rep.AccountsMatched, rep.Accounts),
		fmt.Sprintf("current registrations: attempts vault %d = driver %d; successes vault %d = driver %d",
			rep.SumVaultAttempts, rep.SumAnswered, rep.SumVaultSuccesses, rep.SumConfirmed))

	b.WriteString("\nvault\n")
	commits := delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_store_sequence")
	anchors := delta(rep.MetricsBefore, rep.MetricsAfter, "cofferd_anchor_writes")
	row("commits during the run", fmt.Sprintf("%.0f", commits), per(commits), "(store_sequence, cofferd's status poll)")
	row("anchor writes during the run", fmt.Sprintf("%.0f", anchors), per(anchors))
	staged := float64(rep.Run.answered[protocol.TypeLoginStart] + rep.Run.ops.restores + 2*rep.Run.ops.changes)
	if commits > 0 {
		row("record writes per commit", fmt.Sprintf("%.2f", staged/commits), "(≈ (login starts + confirmations + changes) / commits)")
	}
	row("at the kill / after the restart", fmt.Sprintf("seq %d/%d", rep.SeqAtKill, rep.SeqAfterRestart),
		fmt.Sprintf("anchor writes %d/%d", rep.AnchorAtKill, rep.AnchorAfterRestart))
	if !rep.VaultInProcess {
		cpu := rep.VaultAfter.cpu - rep.VaultBefore.cpu
		row("vault RSS peak (sampled 1/s)", mib(rep.PeakRSS), "VmHWM "+mib(rep.VaultAtKill.peak), "at the end "+mib(rep.VaultAfter.rss))
		row("vault CPU during the run", cpu.Round(time.Second).String(), fmt.Sprintf("%.2f cores", cpu.Seconds()/secs))
		if n := rep.Run.answered[protocol.TypeLoginStart]; n > 0 {
			row("vault CPU per login start", fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(n)), "(everything it did, over login starts)")
		}
	}
	row("store file on disk", mib(rep.StoreBytes))
	row("driver+cofferd CPU (this process)", rep.DriverCPU.Round(time.Second).String(), fmt.Sprintf("%.2f cores", rep.DriverCPU.Seconds()/math.Max(secs, 1)))
	row("clients' Argon2id runs / cache hits", fmt.Sprintf("%d / %d", rep.ArgonRuns, rep.ArgonHits),
		fmt.Sprintf("%s in Argon2id", rep.ArgonTime.Round(time.Second)))

	if len(rep.FailureClasses) > 0 {
		b.WriteString("\nfailures by phase and class\n")
		for _, l := range rep.FailureClasses {
			b.WriteString("  " + l + "\n")
		}
		b.WriteString("first failures\n")
		for _, l := range rep.FirstFailures {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

func cofferdQuantiles(rep *Report, t protocol.Type) string {
	p50 := histogramQuantile(rep.MetricsBefore, rep.MetricsAfter, t.String(), 0.5)
	p99 := histogramQuantile(rep.MetricsBefore, rep.MetricsAfter, t.String(), 0.99)
	if math.IsNaN(p50) {
		return ""
	}
	return fmt.Sprintf("cofferd ≈p50 %-8s ≈p99 %s", ms(time.Duration(p50*float64(time.Second))), ms(time.Duration(p99*float64(time.Second))))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func rateText(perSecond float64) string {
	if perSecond == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%g/s", perSecond)
}
