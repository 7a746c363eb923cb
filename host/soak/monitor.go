package soak

import (
	"os"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// abortAfter failures, the run stops early: the vault is broken and more
// of the same teaches nothing.
const abortAfter = 1000

// monitor watches the vault while the clients run: its store sequence and
// anchor write counter as cofferd's status poll reports them (neither may
// go backwards), its memory, and progress lines.
type monitor struct {
	r       *runner
	abort   chan struct{}
	peakRSS int64
	samples int

	seq, anchor uint64
}

func newMonitor(r *runner) *monitor { return &monitor{r: r, abort: make(chan struct{})} }

func (m *monitor) watch(start time.Time, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	nextProgress := start.Add(m.r.cfg.ProgressEvery)
	aborted := false
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		m.check()
		if !aborted && m.r.fails.count() > abortAfter {
			aborted = true
			close(m.abort)
		}
		if now := time.Now(); now.After(nextProgress) {
			nextProgress = nextProgress.Add(m.r.cfg.ProgressEvery)
			m.progress(now.Sub(start))
		}
	}
}

func (m *monitor) check() {
	if s := m.r.vault.sample(); s.rss > 0 {
		m.samples++
		m.peakRSS = max(m.peakRSS, s.rss)
	}
	d, ok := m.r.srv.Health().Devices[m.r.dev.Name()]
	if !ok || d.StoreSequence == nil || d.AnchorWrites == nil {
		return
	}
	if *d.StoreSequence < m.seq || *d.AnchorWrites < m.anchor {
		m.r.fails.add("status-backwards", "-", "store sequence %d, anchor writes %d after %d, %d",
			*d.StoreSequence, *d.AnchorWrites, m.seq, m.anchor)
	}
	m.seq, m.anchor = max(m.seq, *d.StoreSequence), max(m.anchor, *d.AnchorWrites)
}

func (m *monitor) progress(elapsed time.Duration) {
	t := m.r.tot
	s := m.r.vault.sample()
	m.r.cfg.Progress("%5.0fs: login-starts answered %d, sessions %d; 429 %d, 503 %d, busy %d; failures %d; store seq %d, anchor %d; vault RSS %d MiB; load %s",
		elapsed.Seconds(), t.answered[protocol.TypeLoginStart].Load(), t.answered[protocol.TypeSession].Load(),
		t.rateLimited.Load(), t.unavailable.Load(), t.vaultBusy.Load(), m.r.fails.count(), m.seq, m.anchor, s.rss>>20, loadAverage())
}

// loadAverage is the first three fields of /proc/loadavg ("" elsewhere).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
