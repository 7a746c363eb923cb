package vault

import (
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the process's CPU time (user and system) over a
// benchmark's loop. On a shared machine wall time per operation swings with
// the other processes' load; CPU time counts only this process's work
// (the garbage collector's included), so the ratios REALMS.md 17 asks for
// stay comparable between runs.
type cpuMeter struct{ start time.Duration }

func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPU is called just before the benchmark's loop.
func startCPU(b *testing.B) cpuMeter { return cpuMeter{start: processCPU(b)} }

// report adds cpu-ns/op, the CPU time per iteration of the loop.
func (m cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64((processCPU(b)-m.start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
