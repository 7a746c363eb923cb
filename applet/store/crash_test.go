package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
)

// The crash tests cut the power at every write, flush and anchor write a
// trace makes (the "events"), then explore what the cut can leave behind:
// any subset of the writes since the last flush, the write in flight torn at
// any sector boundary, and an anchor write in flight either done or not
// (RPMB writes are atomic). After each, the store must reopen to exactly
// the last committed state (or, if the anchor write of a commit was in
// flight, exactly the new one), keep its sequence at or above every
// acknowledged one, and keep working.

// power counts events and cuts the power at a chosen one, for a device and
// an anchor together.
type power struct {
	mu       sync.Mutex
	budget   int // events before the cut; <0: never
	events   int
	cut      bool
	dev      *storetest.CrashDevice
	inflight *[storage.AnchorSize]byte // anchor write in flight at the cut
}

// tick accounts for one event; it reports whether the power fails during it
// and whether it had already failed.
func (p *power) tick() (now, dead bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false, true
	}
	if p.budget == 0 {
		p.cut = true
		return true, false
	}
	if p.budget > 0 {
		p.budget--
	}
	p.events++
	return false, false
}

func (p *power) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

type cutDevice struct {
	*storetest.CrashDevice
	p *power
}

func (d cutDevice) WriteSectors(lba uint64, b []byte) error {
	now, dead := d.p.tick()
	if dead {
		return storetest.ErrPowerCut
	}
	if now {
		d.CrashDevice.FailAfter(0) // this write is in flight
	}
	return d.CrashDevice.WriteSectors(lba, b)
}

func (d cutDevice) Flush() error {
	now, dead := d.p.tick()
	if dead || now {
		d.CrashDevice.PowerOff()
		return storetest.ErrPowerCut
	}
	return d.CrashDevice.Flush()
}

type cutAnchor struct {
	a storage.Anchor
	p *power
}

func (c cutAnchor) Read() ([storage.AnchorSize]byte, uint32, error) {
	if c.p.isCut() {
		return [storage.AnchorSize]byte{}, 0, storetest.ErrPowerCut
	}
	return c.a.Read()
}

func (c cutAnchor) Write(d [storage.AnchorSize]byte) (uint32, error) {
	now, dead := c.p.tick()
	if dead {
		return 0, storetest.ErrPowerCut
	}
	if now {
		c.p.mu.Lock()
		c.p.inflight = &d
		c.p.mu.Unlock()
		c.p.dev.PowerOff()
		return 0, storetest.ErrPowerCut
	}
	return c.a.Write(d)
}

// crashOp is one step of a trace.
type crashOp struct {
	kind byte // 'p'ut, 'd'elete, 's'hred, 'c'ommit
	id   string
	rec  string
}

// traceRun is the outcome of running a trace until the power failed.
type traceRun struct {
	formatted bool   // Format completed
	inFormat  bool   // the cut hit Format
	committed model  // last acknowledged state
	inflight  model  // the state the interrupted commit would have anchored, or nil
	ackSeq    uint64 // highest sequence acknowledged
	dev       *storetest.CrashDevice
	rpmb      *storetest.MemRPMB
	p         *power
}

const crashSectors = 2048

// runTrace runs Format, Open and trace on fresh media with the power
// failing at event cut (never if negative), and returns what it left.
func runTrace(t *testing.T, opts Options, trace []crashOp, cut int) *traceRun {
	t.Helper()
	dev := storetest.NewCrashDevice(crashSectors)
	_, rp := storetest.NewMemAnchor(testAuthKey)
	p := &power{budget: cut, dev: dev}
	cd := cutDevice{dev, p}
	ca := cutAnchor{storage.NewRPMBAnchor(rp, testAuthKey, 0), p}
	run := &traceRun{committed: model{}, dev: dev, rpmb: rp, p: p}

	if err := Format(cd, ca, opts); err != nil {
		if !errors.Is(err, storetest.ErrPowerCut) {
			t.Fatalf("Format: %v", err)
		}
		run.inFormat = true
		return run
	}
	run.formatted = true
	s, err := Open(cd, ca, opts)
	if err != nil {
		if !errors.Is(err, storetest.ErrPowerCut) {
			t.Fatalf("Open: %v", err)
		}
		return run
	}
	defer s.Close()
	run.ackSeq = s.Stats().Seq
	staged := map[string]*string{}
	for _, op := range trace {
		var err error
		switch op.kind {
		case 'p':
			v := op.rec
			staged[op.id] = &v
			err = s.Put([]byte(op.id), []byte(op.rec))
		case 'd':
			staged[op.id] = nil
			err = s.Delete([]byte(op.id))
		case 's':
			s.Shred()
		case 'c':
			var seq uint64
			seq, err = s.Commit(context.Background())
			if err == nil {
				if seq < run.ackSeq {
					t.Fatalf("Commit returned sequence %d after %d", seq, run.ackSeq)
				}
				run.ackSeq = seq
				run.committed = run.committed.apply(staged)
				staged = map[string]*string{}
			} else if errors.Is(err, storetest.ErrPowerCut) || errors.Is(err, ErrFailed) {
				if p.inflight != nil {
					run.inflight = run.committed.apply(staged)
				}
			}
		}
		if err != nil {
			if !p.isCut() {
				t.Fatalf("op %+v: %v without a power cut", op, err)
			}
			return run
		}
	}
	return run
}

// outcome is one way the power cut can resolve.
type outcome struct {
	keep    []int
	applied bool // the anchor write in flight happened
}

// outcomes lists the resolutions of the cut in run, all of them if there
// are at most limit, else limit of them chosen at random (always including
// keep-nothing and keep-everything).
func outcomes(run *traceRun, limit int, r *rand.Rand) []outcome {
	pend := run.dev.Pending()
	anchorChoices := []bool{false}
	if run.p.inflight != nil {
		anchorChoices = []bool{false, true}
	}
	// Completed writes survive whole or not at all; the one in flight
	// keeps any prefix. (Crash, used by the random test, also tears
	// completed writes.)
	total := 1
	for _, w := range pend {
		if w.InFlight {
			total *= w.Sectors() + 1
		} else {
			total *= 2
		}
		if total > 1<<20 {
			break
		}
	}
	total *= len(anchorChoices)
	var out []outcome
	choose := func(idx int) outcome {
		o := outcome{keep: make([]int, len(pend))}
		o.applied = anchorChoices[idx%len(anchorChoices)]
		idx /= len(anchorChoices)
		for i, w := range pend {
			base := 2
			if w.InFlight {
				base = w.Sectors() + 1
			}
			k := idx % base
			idx /= base
			if !w.InFlight && k == 1 {
				k = w.Sectors()
			}
			o.keep[i] = k
		}
		return o
	}
	if total <= limit {
		for i := 0; i < total; i++ {
			out = append(out, choose(i))
		}
		return out
	}
	all := outcome{keep: make([]int, len(pend)), applied: len(anchorChoices) == 2}
	for i, w := range pend {
		all.keep[i] = w.Sectors()
	}
	out = append(out, outcome{keep: make([]int, len(pend))}, all)
	for len(out) < limit {
		out = append(out, choose(r.IntN(total)))
	}
	return out
}

// recover applies an outcome to copies of the media and checks the store
// that reopens there. It returns the recovered state and the media.
func (run *traceRun) recover(opts Options, o outcome, universe []string) (model, *storetest.CrashDevice, *storetest.MemRPMB, error) {
	dev := run.dev.Clone()
	dev.CrashKeep(o.keep)
	rp := run.rpmb.Clone()
	anc := storage.NewRPMBAnchor(rp, testAuthKey, 0)
	if o.applied {
		if _, err := anc.Write(*run.p.inflight); err != nil {
			return nil, nil, nil, fmt.Errorf("applying the anchor write in flight: %w", err)
		}
	}
	s, err := Open(dev, anc, opts)
	if !run.formatted && !(run.inFormat && o.applied) {
		// The format's anchor write did not happen: the store does not
		// exist, and must say so rather than open or claim tampering.
		if !errors.Is(err, ErrNotFormatted) {
			return nil, nil, nil, fmt.Errorf("Open after a cut in Format: %v, want ErrNotFormatted", err)
		}
		if err := Format(dev, anc, opts); err != nil {
			return nil, nil, nil, fmt.Errorf("Format after a cut in Format: %w", err)
		}
		s, err = Open(dev, anc, opts)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("Open: %w", err)
	}
	defer s.Close()
	want := run.committed
	if o.applied && run.inflight != nil {
		want = run.inflight
	}
	if err := want.check(s, universe); err != nil {
		return nil, nil, nil, fmt.Errorf("recovered state (applied=%v): %w", o.applied, err)
	}
	if seq := s.Stats().Seq; seq <= run.ackSeq {
		return nil, nil, nil, fmt.Errorf("sequence %d after recovery, acknowledged %d", seq, run.ackSeq)
	}
	// The recovered store must keep working: commit on top of it, reopen,
	// and find everything.
	s.Put([]byte("after-crash"), []byte("ok"))
	if _, err := s.Commit(context.Background()); err != nil {
		return nil, nil, nil, fmt.Errorf("commit after recovery: %w", err)
	}
	s.Close()
	s2, err := Open(dev, anc, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reopen after recovery: %w", err)
	}
	defer s2.Close()
	after := want.apply(map[string]*string{"after-crash": ptr("ok")})
	if err := after.check(s2, append(universe, "after-crash")); err != nil {
		return nil, nil, nil, fmt.Errorf("after a commit on the recovered store: %w", err)
	}
	return want, dev, rp, nil
}

func ptr(s string) *string { return &s }

func crashTraces() map[string][]crashOp {
	rec := func(i int) string { return fmt.Sprintf("record %d %s", i, string(make([]byte, i%50))) }
	var grow []crashOp
	for i := 0; i < 12; i++ {
		grow = append(grow, crashOp{'p', fmt.Sprint("u", i), rec(i)})
		if i%3 == 2 {
			grow = append(grow, crashOp{kind: 'c'})
		}
	}
	var big []crashOp
	for i := 0; i < 40; i++ {
		big = append(big, crashOp{'p', fmt.Sprint("b", i), rec(i)})
	}
	big = append(big, crashOp{kind: 'c'})
	for i := 0; i < 40; i += 2 {
		big = append(big, crashOp{'d', fmt.Sprint("b", i), ""})
	}
	big = append(big, crashOp{'p', "b1", "again"}, crashOp{kind: 'c'})
	return map[string][]crashOp{
		// one commit large enough to be written as several runs
		"large-batch": big,
		"small": {
			{'p', "a", "a1"}, {kind: 'c'},
			{'p', "b", "b1"}, {'p', "c", "c1"}, {kind: 'c'},
			{'p', "a", "a2"}, {'d', "b", ""}, {kind: 'c'},
			{kind: 's'}, {'d', "c", ""}, {kind: 'c'},
			{'p', "a", "a3"}, {kind: 'c'},
		},
		// grows a tree of fanout 3 to height 3, then shrinks it
		"splits-merges": append(grow,
			crashOp{'d', "u0", ""}, crashOp{'d', "u1", ""}, crashOp{'d', "u2", ""}, crashOp{'d', "u3", ""},
			crashOp{kind: 'c'},
			crashOp{'d', "u4", ""}, crashOp{'d', "u5", ""}, crashOp{'d', "u6", ""}, crashOp{'d', "u7", ""},
			crashOp{'p', "u1", "back"}, crashOp{kind: 'c'},
		),
	}
}

// TestCrashEnumeration cuts the power at every event of small traces and
// explores every resolution of each cut (sampled when there are too many).
func TestCrashEnumeration(t *testing.T) {
	limit := 256
	if testing.Short() {
		limit = 8
	}
	for name, trace := range crashTraces() {
		t.Run(name, func(t *testing.T) {
			opts := testOpts(3)
			universe := []string{"after-crash"}
			seen := map[string]bool{}
			for _, op := range trace {
				if op.id != "" && !seen[op.id] {
					seen[op.id] = true
					universe = append(universe, op.id)
				}
			}
			full := runTrace(t, opts, trace, -1)
			events := full.p.events
			r := rand.New(rand.NewPCG(uint64(len(trace)), 7))
			var explored, withAnchor, torn int
			for cut := 0; cut <= events; cut++ {
				run := runTrace(t, opts, trace, cut)
				for _, o := range outcomes(run, limit, r) {
					if _, _, _, err := run.recover(opts, o, universe); err != nil {
						t.Fatalf("cut at event %d/%d, keep %v: %v", cut, events, o.keep, err)
					}
					explored++
					if o.applied {
						withAnchor++
					}
					for i, w := range run.dev.Pending() {
						if k := o.keep[i]; k > 0 && k < w.Sectors() {
							torn++
							break
						}
					}
				}
			}
			t.Logf("%d events, %d crash states explored (%d with the anchor write in flight applied, %d with a torn write)",
				events, explored, withAnchor, torn)
			if withAnchor == 0 || torn == 0 {
				t.Fatal("the enumeration did not reach anchor or torn-write cuts")
			}
		})
	}
}

// TestCrashRandomLong runs long random traces, cutting the power at random
// events with random outcomes (including completed writes torn at any
// sector), recovering, and carrying on from the recovered state. Set
// COFFER_SOAK=N to run N times more, COFFER_SEED to vary the traces.
func TestCrashRandomLong(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 25
	}
	if n, _ := strconv.Atoi(os.Getenv("COFFER_SOAK")); n > 0 {
		rounds *= n
	}
	opts := testOpts(4)
	seed, _ := strconv.ParseUint(os.Getenv("COFFER_SEED"), 10, 64)
	r := rand.New(rand.NewPCG(42+seed, uint64(rounds)))
	var universe []string
	for i := 0; i < 40; i++ {
		universe = append(universe, fmt.Sprint("u", i))
	}
	universe = append(universe, "after-crash")

	// Media carried from round to round.
	dev := storetest.NewCrashDevice(crashSectors)
	anc, rp := storetest.NewMemAnchor(testAuthKey)
	if err := Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	state := model{}
	var ackSeq uint64
	cuts := map[string]int{}
	for round := 0; round < rounds; round++ {
		p := &power{budget: r.IntN(60), dev: dev}
		cd, ca := cutDevice{dev, p}, cutAnchor{storage.NewRPMBAnchor(rp, testAuthKey, 0), p}
		committed := state
		var inflight model
		s, err := Open(cd, ca, opts)
		if err == nil {
			if seq := s.Stats().Seq; seq <= ackSeq {
				t.Fatalf("round %d: sequence %d after open, acknowledged %d", round, seq, ackSeq)
			}
			ackSeq = s.Stats().Seq
			staged := map[string]*string{}
			for !p.isCut() {
				k := universe[r.IntN(len(universe)-1)]
				switch x := r.IntN(10); {
				case x < 6:
					v := fmt.Sprintf("%s@%d.%d%s", k, round, r.IntN(1000), make([]byte, r.IntN(MaxRecordSize-30)))
					s.Put([]byte(k), []byte(v))
					staged[k] = &v
				case x < 8:
					s.Delete([]byte(k))
					staged[k] = nil
				case x < 9:
					s.Shred()
				default:
					seq, err := s.Commit(context.Background())
					if err == nil {
						if seq < ackSeq {
							t.Fatalf("round %d: Commit sequence %d after %d", round, seq, ackSeq)
						}
						ackSeq = seq
						committed = committed.apply(staged)
						staged = map[string]*string{}
					} else if p.inflight != nil {
						inflight = committed.apply(staged)
					}
				}
			}
			s.Close()
		} else if !errors.Is(err, storetest.ErrPowerCut) {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		// Resolve the cut at random.
		dev.Crash(r)
		applied := p.inflight != nil && r.IntN(2) == 0
		kind := "device"
		if p.inflight != nil {
			kind = fmt.Sprintf("anchor(applied=%v)", applied)
		}
		cuts[kind]++
		if applied {
			if _, err := storage.NewRPMBAnchor(rp, testAuthKey, 0).Write(*p.inflight); err != nil {
				t.Fatal(err)
			}
			if inflight != nil {
				committed = inflight
			}
		}
		s2, err := Open(dev, anc, opts)
		if err != nil {
			t.Fatalf("round %d: reopen after %s cut: %v", round, kind, err)
		}
		if err := committed.check(s2, universe); err != nil {
			t.Fatalf("round %d: after %s cut: %v", round, kind, err)
		}
		if seq := s2.Stats().Seq; seq <= ackSeq {
			t.Fatalf("round %d: sequence %d after recovery, acknowledged %d", round, seq, ackSeq)
		}
		ackSeq = s2.Stats().Seq
		s2.Close()
		state = committed
	}
	t.Logf("seed %d: %d rounds, cuts: %v, final %d records", seed, rounds, cuts, len(state))
}
