package host

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// TestGracefulShutdownFinishesInFlight: when told to stop, cofferd stops
// accepting connections but answers the request it is relaying.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	dev := newStub("stub")
	dev.gate = make(chan struct{})
	dev.entered = make(chan struct{}, 1)
	s, err := New(Config{Devices: []Device{dev}, Store: accounts, Log: quiet, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	reportHealthy(t, s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	reply := make(chan error, 1)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		_, err := post(context.Background(), client, url, tokens["alice"], mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}))
		reply <- err
	}()
	<-dev.entered
	stop()
	// New connections are refused once the listener is closed.
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}
	dev.gate <- struct{}{}
	if err := <-reply; err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if dev.closed.Load() {
		t.Fatal("Serve closed the device; Close does that")
	}
	if err := s.Close(); err != nil || !dev.closed.Load() {
		t.Fatalf("Close: %v, device closed %v", err, dev.closed.Load())
	}
}

// TestMetricsExposeTheNamedSeries checks /metrics for every series API.md
// names, after traffic that produces each.
func TestMetricsExposeTheNamedSeries(t *testing.T) {
	ctx := context.Background()
	inst, pub, _ := softVault(t)
	accounts, accts, tokens := testAccounts(t, "alice")
	srv, hs := testServer(t, Config{Devices: []Device{NewSoftDevice("soft", inst.Vault)}, Store: accounts,
		PollInterval: 10 * time.Millisecond, LoginRate: DefaultLoginRate, LoginBurst: 2})
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, []byte("pw"), make([]byte, 32), 1); err != nil {
		t.Fatal(err)
	}
	alice.Login(ctx, []byte("wrong"))                                      // the last try: locks
	alice.Login(ctx, []byte("pw"))                                         // a locked receipt
	if _, _, err := alice.Login(ctx, []byte("pw")); statusOf(err) != 429 { // rate limited
		t.Fatalf("third login start: %v", err)
	}
	waitFor(t, "the status poll", func() bool {
		return testutilGauge(t, srv, "cofferd_anchor_writes", map[string]string{"device": "soft"}) > 0
	})
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	want := []string{
		`cofferd_requests_total{code="200",type="login-start"}`,
		`cofferd_requests_total{code="429",type="login-start"}`,
		`cofferd_request_seconds_bucket{type="register-start",le=`,
		`cofferd_request_seconds_count{type="login-finish"}`,
		`cofferd_queue_depth{device="soft"} 0`,
		`cofferd_vault_errors_total{code="authentication",device="soft"}`,
		`cofferd_lockouts_total 1`,
		`cofferd_rate_limited_total 1`,
		`cofferd_device_connected{device="soft"} 1`,
		`cofferd_anchor_writes{device="soft"}`,
		`cofferd_device_insecure{device="soft"} 1`,
		`go_goroutines`,
	}
	if missing := containsAll(text, want...); len(missing) > 0 {
		t.Fatalf("/metrics lacks %q:\n%s", missing, grepLines(text, "cofferd_"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
