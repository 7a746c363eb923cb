package host

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/measure"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// memAccount makes an account and its token without a file.
func memAccount(name string) (Account, string) {
	raw := make([]byte, tokenSize)
	rand.Read(raw)
	sum := sha256.Sum256(raw)
	id := make([]byte, UserIDSize)
	rand.Read(id)
	return Account{Name: name, UserID: id, TokenSHA256: sum[:]}, base64.RawURLEncoding.EncodeToString(raw)
}

// BenchmarkLoginLatency200 measures what cofferd adds to a login: 200
// clients log in concurrently (KE1 → KE2, KE3 → released key; identity key
// stretching, so the client's share is small), once calling the software
// vault directly and once through cofferd (HTTP on loopback, with its
// defaults: 64 in flight per device, queue 256), in alternating rounds in the
// same run (ten rounds each, so that both see the same background load). It
// reports p50 and p99 of each, the added percentage, logins/s and the
// process's CPU per login (client, cofferd and vault share this machine's
// cores); it asserts nothing. Run it with a fixed count, e.g.
//
//	go test ./host -run '^$' -bench LoginLatency200 -benchtime 4000x
func BenchmarkLoginLatency200(b *testing.B) {
	const clients = 200
	ctx := context.Background()
	inst, pub, _ := softVault(b)
	soft := NewSoftDevice("soft", inst.Vault)
	var list []Account
	tokens := make([]string, clients)
	for i := range clients {
		a, tok := memAccount(fmt.Sprintf("user%d", i))
		list, tokens[i] = append(list, a), tok
	}
	srv, hs := testServer(b, Config{Devices: []Device{soft}, Accounts: NewAccounts(list...), LoginRate: 0})
	_ = srv
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients}}
	directRT := testclient.RoundTrip(func(ctx context.Context, req []byte) ([]byte, error) { return inst.Vault.Handle(ctx, req), nil })
	id, err := testclient.FetchIdentity(ctx, directRT, pub)
	if err != nil {
		b.Fatal(err)
	}
	direct := make([]*testclient.Client, clients)
	viaCofferd := make([]*testclient.Client, clients)
	for i := range clients {
		direct[i] = &testclient.Client{RoundTrip: directRT, Identity: id, UserID: list[i].UserID}
		tok := tokens[i]
		viaCofferd[i] = &testclient.Client{Identity: id, UserID: list[i].UserID,
			RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return post(ctx, httpClient, hs.URL, tok, req) }}
		if _, err := direct[i].Register(ctx, []byte("pw"), make([]byte, 32), 10); err != nil {
			b.Fatal(err)
		}
	}
	// run does n logins spread over the clients, all of them at once, and
	// returns each one's latency.
	run := func(users []*testclient.Client, n int) []time.Duration {
		lat := make([]time.Duration, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		for _, c := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					t0 := time.Now()
					s, _, err := c.Login(ctx, []byte("pw"))
					lat[i] = time.Since(t0)
					if err != nil {
						b.Error(err)
						return
					}
					s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandClose})
				}
			}()
		}
		wg.Wait()
		return lat
	}
	run(direct, clients) // warm up both paths (and cofferd's connections)
	run(viaCofferd, clients)
	const rounds = 10
	per := max(b.N/rounds, clients) // every round keeps all 200 clients busy
	var d, c []time.Duration
	var dCPU, cCPU, dWall, cWall time.Duration
	b.ResetTimer()
	for range rounds {
		w0, c0 := time.Now(), measure.ProcessCPU()
		d = append(d, run(direct, per)...)
		w1, c1 := time.Now(), measure.ProcessCPU()
		c = append(c, run(viaCofferd, per)...)
		w2, c2 := time.Now(), measure.ProcessCPU()
		dCPU, cCPU = dCPU+c1-c0, cCPU+c2-c1
		dWall, cWall = dWall+w1.Sub(w0), cWall+w2.Sub(w1)
	}
	b.StopTimer()
	n := float64(per * rounds)
	b.ReportMetric(float64(dCPU.Microseconds())/n, "direct-cpu-us/login")
	b.ReportMetric(float64(cCPU.Microseconds())/n, "cofferd-cpu-us/login")
	b.ReportMetric(n/dWall.Seconds(), "direct-logins/s")
	b.ReportMetric(n/cWall.Seconds(), "cofferd-logins/s")
	d50, d99 := measure.Percentiles(d)
	c50, c99 := measure.Percentiles(c)
	b.ReportMetric(ms(d50), "direct-p50-ms")
	b.ReportMetric(ms(d99), "direct-p99-ms")
	b.ReportMetric(ms(c50), "cofferd-p50-ms")
	b.ReportMetric(ms(c99), "cofferd-p99-ms")
	b.ReportMetric(100*(ms(c50)-ms(d50))/ms(d50), "added-p50-%")
	b.ReportMetric(100*(ms(c99)-ms(d99))/ms(d99), "added-p99-%")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// instantDevice answers every request at once with a fixed reply.
type instantDevice struct{ reply []byte }

func (d *instantDevice) Name() string                                      { return "instant" }
func (d *instantDevice) Connected() bool                                   { return true }
func (d *instantDevice) Close() error                                      { return nil }
func (d *instantDevice) RoundTrip(context.Context, []byte) ([]byte, error) { return d.reply, nil }

// BenchmarkRelayOverhead splits what a request through cofferd costs: a
// bare net/http handler that reads the body and writes a reply, against
// cofferd's handler (authentication, routing parse, rate limit, device
// queue, metrics) over a device that answers at once. Both run client and
// server in this process on loopback, 200 requests at a time; cpu-us/req is
// the process's CPU per request, client side included.
func BenchmarkRelayOverhead(b *testing.B) {
	a, tok := memAccount("a")
	req, _ := protocol.Encode(protocol.TypeLoginStart, &protocol.LoginStart{UserID: a.UserID, KE1: make([]byte, protocol.KE1Size)})
	reply := make([]byte, 600) // about a login-start reply
	for _, mode := range []string{"bare-http", "cofferd"} {
		b.Run(mode, func(b *testing.B) {
			var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/cbor")
				w.Write(reply)
			})
			if mode == "cofferd" {
				s, err := New(Config{Devices: []Device{&instantDevice{reply}}, Accounts: NewAccounts(a), PollInterval: -1, Log: quiet})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				h = s.Handler()
			}
			hs := httptest.NewServer(h)
			defer hs.Close()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.SetParallelism(100)
			cpu0 := measure.ProcessCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := post(context.Background(), c, hs.URL, tok, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((measure.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/req")
		})
	}
}
