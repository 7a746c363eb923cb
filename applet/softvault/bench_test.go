package softvault

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/measure"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
)

// BenchmarkSoftwareVaultLogins measures complete logins per second through
// the software vault: served on a unix socket, on the real record store whose
// every flush takes 2 ms more (as eMMC might), driven by concurrent clients
// in this process. Client-side key stretching is the identity function, so
// the client's cost is only its OPAQUE arithmetic; it shares the machine's
// cores with the vault. Reports logins/s, p50/p99 latency and the CPU cores
// the whole process kept busy.
func BenchmarkSoftwareVaultLogins(b *testing.B) {
	for _, clients := range []int{16, 64, 200} {
		b.Run(fmt.Sprintf("%dclients", clients), func(b *testing.B) {
			benchmarkLogins(b, clients, 2*time.Millisecond)
		})
	}
}

func benchmarkLogins(b *testing.B, clients int, flush time.Duration) {
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := DevSetup(ctx, dir, 10, io.Discard); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "v.sock")
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, dir, "unix:"+sock, Options{FlushLatency: flush, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, io.Discard)
	}()
	defer func() { cancel(); <-done }()

	var conns []*protocol.StreamClient
	for i := 0; i < 8; i++ {
		var c net.Conn
		var err error
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
			if c, err = net.Dial("unix", sock); err == nil {
				break
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		sc := protocol.NewStreamClient(c)
		defer sc.Close()
		conns = append(conns, sc)
	}
	id := readIdentity(b, ctx, dir, conns[0])
	users := make([]*testclient.Client, clients)
	var wg sync.WaitGroup
	for i := range users {
		users[i] = &testclient.Client{RoundTrip: conns[i%len(conns)].RoundTrip, Identity: id, UserID: []byte(fmt.Sprintf("bench-%d", i))}
		wg.Add(1)
		go func(c *testclient.Client) {
			defer wg.Done()
			if _, err := c.Register(ctx, []byte("pw"), make([]byte, 32), 10); err != nil {
				b.Error(err)
			}
		}(users[i])
	}
	wg.Wait()

	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	b.ResetTimer()
	began, cpu0 := time.Now(), measure.ProcessCPU()
	for _, c := range users {
		wg.Add(1)
		go func(c *testclient.Client) {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= int64(b.N) {
					return
				}
				t0 := time.Now()
				s, _, err := c.Login(ctx, []byte("pw"))
				if err != nil {
					b.Error(err)
					return
				}
				latencies[n] = time.Since(t0)
				s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandClose})
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	p50, p99 := measure.Percentiles(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "logins/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric((measure.ProcessCPU()-cpu0).Seconds()/elapsed.Seconds(), "cores-busy")
}

func readIdentity(b *testing.B, ctx context.Context, dir string, c *protocol.StreamClient) *protocol.Identity {
	key, err := provision.ReadKey(filepath.Join(dir, DevProvisioningKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	id, err := testclient.FetchIdentity(ctx, c.RoundTrip, key.Public().(ed25519.PublicKey))
	if err != nil {
		b.Fatal(err)
	}
	return id
}
