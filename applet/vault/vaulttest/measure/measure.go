// Package measure holds the arithmetic that benchmarks and the soak test
// report with (latency percentiles, the process's CPU time), so that every
// report computes them the same way.
package measure

import (
	"slices"
	"syscall"
	"time"
)

// Percentiles returns the median and the 99th percentile of d (zero when d
// is empty), for benchmarks that report latency.
func Percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0, 0
	}
	return s[len(s)/2], s[len(s)*99/100]
}

// ProcessCPU is the CPU time (user + system) this process has used, so that
// a benchmark can report how many cores it kept busy.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
