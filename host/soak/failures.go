package soak

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// failures collects everything the soak must not see: a refusal that is
// not explicit backpressure, a receipt that disagrees with the model, a
// counter that went backwards. The soak goes on after one, so that a run
// reports every kind it met.
type failures struct {
	start time.Time
	phase atomic.Value // string: setup, run, final, restart

	mu      sync.Mutex
	byClass map[string]int
	first   []string
	total   atomic.Int64
}

const keepFailures = 40

func newFailures() *failures {
	f := &failures{start: time.Now(), byClass: map[string]int{}}
	f.phase.Store("setup")
	return f
}

func (f *failures) setPhase(p string) { f.phase.Store(p) }

// add records one failure of class (a short stable name) for account.
func (f *failures) add(class, account, format string, args ...any) {
	f.total.Add(1)
	phase := f.phase.Load().(string)
	msg := fmt.Sprintf("%7.1fs %-7s %-12s %-28s %s", time.Since(f.start).Seconds(), phase, account, class, fmt.Sprintf(format, args...))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byClass[phase+" "+class]++
	if len(f.first) < keepFailures {
		f.first = append(f.first, msg)
	}
}

func (f *failures) count() int64 { return f.total.Load() }

// summary lists the classes with their counts, and the first failures.
func (f *failures) summary() (classes []string, first []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c, n := range f.byClass {
		classes = append(classes, fmt.Sprintf("%6d  %s", n, c))
	}
	slices.Sort(classes)
	return classes, slices.Clone(f.first)
}
