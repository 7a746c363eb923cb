package releasewriter

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAddWitnessedVsUnwitnessed measures, in one process, an Add that
// waits for a checkpoint cosigned by 2 of 2 in-process witnesses (HTTP,
// consistency proofs, state written by each witness) against an Add to a
// log that no witness cosigns, both with the same 100ms checkpoint
// interval, and reports the ratio.
func BenchmarkAddWitnessedVsUnwitnessed(b *testing.B) {
	f := newFixture(b, 2, 2)
	ctx := context.Background()
	witnessed, err := open(ctx, f.config(b.TempDir()), true)
	if err != nil {
		b.Fatal(err)
	}
	defer witnessed.Close()
	bare, err := open(ctx, f.config(b.TempDir()), false)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	var tw, tu time.Duration
	b.ResetTimer()
	for i := range b.N {
		for _, c := range []struct {
			l *Log
			d *time.Duration
		}{{bare, &tu}, {witnessed, &tw}} {
			start := time.Now()
			if _, _, err := c.l.Add(ctx, release(uint64(i+1))); err != nil {
				b.Fatal(err)
			}
			*c.d += time.Since(start)
		}
	}
	b.ReportMetric(float64(tw.Milliseconds())/float64(b.N), "ms/witnessed-add")
	b.ReportMetric(float64(tu.Milliseconds())/float64(b.N), "ms/unwitnessed-add")
	b.ReportMetric(float64(tw)/float64(tu), "witnessed/unwitnessed")
}
