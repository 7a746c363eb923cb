package vault

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/measure"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// cyclicReader repeats one block of bytes, so that a vault given it draws
// the same nonces, keyshares and handles for every login: the benchmark can
// then replay one client's KE1 and KE3 and time the vault alone. Never use it
// outside benchmarks.
type cyclicReader struct {
	block []byte
	off   int
}

func (r *cyclicReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.block[r.off]
		r.off = (r.off + 1) % len(r.block)
	}
	return len(p), nil
}

// BenchmarkVaultLogin is the vault's whole CPU cost of one successful login,
// KE1 → KE2 and KE3 → release, through Handle: decoding, the counted attempt
// and its commit (in RAM), OPAQUE, two signed receipts, the session keys and
// the sealed release. Compare with applet/opaque's BenchmarkServerLogin (bare
// OPAQUE) and BenchmarkBytemareServerLogin (the reference server) run in the
// same script (make bench-login).
func BenchmarkVaultLogin(b *testing.B) {
	// 96 bytes for GenerateKE2 (masking nonce, server nonce, keyshare seed)
	// and 16 for the handle, per login.
	block := make([]byte, 96+protocol.HandleSize)
	rand.Read(block)
	h := newHarness(b, Options{})
	c := h.client("bench")
	key := register(b, c, "pw", 10)
	h.opts.Rand = &cyclicReader{block: block}
	h.boot()

	cl, ke1, err := opaque.NewClientLogin(rand.Reader, []byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	startReq, _ := protocol.Encode(protocol.TypeLoginStart, &protocol.LoginStart{UserID: []byte("bench"), KE1: ke1})
	var start protocol.LoginStartReply
	if err := protocol.Decode(h.v.Handle(context.Background(), startReq), protocol.TypeLoginStart, &start); err != nil {
		b.Fatal(err)
	}
	ke3, _, _, err := cl.Finish(start.KE2, opaque.Identities{Client: []byte("bench")}, opaqueContext, nil)
	if err != nil {
		b.Fatal(err)
	}
	finishReq, _ := protocol.Encode(protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: ke3})
	login := func() {
		var done protocol.SealedReply
		if err := protocol.Decode(h.v.Handle(context.Background(), finishReq), protocol.TypeLoginFinish, &done); err != nil {
			b.Fatal(err)
		}
		h.v.sessions.remove(start.Handle)
	}
	login() // the first KE2 above is pending
	_ = key
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		if err := protocol.Decode(h.v.Handle(context.Background(), startReq), protocol.TypeLoginStart, &start); err != nil {
			b.Fatal(err)
		}
		login()
	}
	cpu.report(b)
}

// BenchmarkLoginsThroughput runs complete logins (client and vault, identity
// key stretching) from many goroutines against one vault whose store takes
// 2 ms per flush, as eMMC might. It reports logins/s and latency percentiles;
// the store's group commit is what makes the rate exceed 1/flush.
func BenchmarkLoginsThroughput(b *testing.B) {
	for _, clients := range []int{1, 64, 256} {
		b.Run(itoa(clients)+"clients", func(b *testing.B) {
			h := newHarness(b, Options{MaxPendingLogins: 8192})
			h.store.FlushLatency = benchFlush
			users := make([]*testclient.Client, clients)
			keys := make([][]byte, clients)
			for i := range users {
				users[i] = h.client("user-" + itoa(i))
				keys[i] = register(b, users[i], "pw", 10)
			}
			var next atomic.Int64
			latencies := make([]time.Duration, b.N)
			b.ResetTimer()
			began, cpu0 := time.Now(), measure.ProcessCPU()
			var wg sync.WaitGroup
			for i := range users {
				wg.Add(1)
				go func(c *testclient.Client) {
					defer wg.Done()
					for {
						n := next.Add(1) - 1
						if n >= int64(b.N) {
							return
						}
						t0 := time.Now()
						s, _, err := c.Login(context.Background(), []byte("pw"))
						if err != nil {
							b.Error(err)
							return
						}
						latencies[n] = time.Since(t0)
						s.Command(context.Background(), &protocol.SessionCommand{Command: protocol.CommandClose})
					}
				}(users[i])
			}
			wg.Wait()
			elapsed := time.Since(began)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "logins/s")
			b.ReportMetric((measure.ProcessCPU()-cpu0).Seconds()/elapsed.Seconds(), "cores-busy")
			p50, p99 := measure.Percentiles(latencies)
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			commits, _ := h.store.Stats()
			b.ReportMetric(float64(b.N)*2/float64(commits), "commits-batched")
		})
	}
}
