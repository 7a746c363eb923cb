package host

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// replayingDevice answers every status request after the first with the
// first signed status: a link, or a device, replaying what the vault once
// said.
type replayingDevice struct {
	Device
	mu      sync.Mutex
	first   []byte
	replays atomic.Int64
}

func (d *replayingDevice) RoundTrip(ctx context.Context, req []byte) ([]byte, error) {
	reply, err := d.Device.RoundTrip(ctx, req)
	if typ, _ := protocol.PeekType(req); typ != protocol.TypeStatus || err != nil {
		return reply, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.first == nil {
		d.first = reply
		return reply, nil
	}
	d.replays.Add(1)
	return d.first, nil
}

// The poller binds each status poll to a fresh nonce: a replayed status,
// though signed by the vault, is refused and /healthz stops showing a store
// sequence it cannot vouch for.
func TestStatusPollRefusesAReplayedStatus(t *testing.T) {
	inst, _, _ := softVault(t)
	accounts, _, _ := testAccounts(t, "alice")
	var logs syncbuf.Buffer
	dev := &replayingDevice{Device: NewSoftDevice("soft", inst.Vault)}
	srv, _ := testServer(t, Config{Devices: []Device{dev}, Store: accounts, PollInterval: 10 * time.Millisecond, Log: slogTo(&logs)})
	waitFor(t, "the poller to refuse a replayed status", func() bool {
		return dev.replays.Load() > 0 && strings.Contains(logs.String(), "vault status unusable") &&
			srv.Health().Devices["soft"].StoreSequence == nil
	})
	if !strings.Contains(logs.String(), "replayed") {
		t.Errorf("the log does not say the status was replayed:\n%s", logs.String())
	}
}

// The poller takes what placement counts from the vault's signed status:
// the registry's records and record capacity are the vault's own, and
// follow it as users register. (They were never there before: placement
// counted only the accounts this realm had placed, against a default.)
func TestStatusPollReportsSignedOccupancy(t *testing.T) {
	inst, pub, _ := softVault(t)
	accounts, accts, tokens := testAccounts(t, "alice")
	_, hs := testServer(t, Config{Devices: []Device{NewSoftDevice("soft", inst.Vault)}, Store: accounts, PollInterval: 10 * time.Millisecond})
	ctx := context.Background()
	signed := func() *protocol.Status {
		t.Helper()
		req := protocol.NewStatusRequest()
		var reply protocol.StatusReply
		if err := protocol.Decode(inst.Vault.Handle(ctx, mustEncode(t, protocol.TypeStatus, req)), protocol.TypeStatus, &reply); err != nil {
			t.Fatal(err)
		}
		st, err := reply.Verify(inst.Vault.Identity().SigningKey, req.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	var registry state.Device
	matches := func() bool {
		st := signed()
		registry, _ = accounts.Device(ctx, "soft")
		return registry.Records == st.Records && registry.RecordCapacity == st.RecordCapacity
	}
	waitFor(t, "the registry to hold the vault's signed occupancy", matches)
	before := registry.Records
	if registry.RecordCapacity <= registry.Records {
		t.Fatalf("registry: %d records of %d", registry.Records, registry.RecordCapacity)
	}
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, []byte("pw"), make([]byte, 32), 10); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registry to count alice's record", func() bool { return matches() && registry.Records > before })
	_, metrics := get(t, hs.URL+"/metrics", "")
	for _, want := range []string{
		fmt.Sprintf("cofferd_device_records{device=\"soft\"} %d\n", registry.Records),
		fmt.Sprintf("cofferd_device_record_capacity{device=\"soft\"} %d\n", registry.RecordCapacity),
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Each host removes the rate-limit buckets idle long enough to be full, and
// only those: an account's spent bucket stays spent.
func TestIdleBucketsArePruned(t *testing.T) {
	inst, _, _ := softVault(t)
	accounts, _, _ := testAccounts(t, "alice")
	ctx := context.Background()
	now := time.Now()
	const burst = 2
	if ok, _, err := accounts.Take(ctx, "login/gone", 1, burst, now.Add(-48*time.Hour)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	for range burst {
		accounts.Take(ctx, "login/alice", 1, burst, now)
	}
	srv, _ := testServer(t, Config{Devices: []Device{NewSoftDevice("soft", inst.Vault)}, Store: accounts,
		LoginRate: 1, LoginBurst: burst, BucketPruneInterval: 10 * time.Millisecond})
	waitFor(t, "the idle bucket to be pruned", func() bool {
		return testutilCounter(t, srv, "cofferd_buckets_pruned_total", nil) == 1
	})
	time.Sleep(50 * time.Millisecond) // more prune rounds: still one
	if got := testutilCounter(t, srv, "cofferd_buckets_pruned_total", nil); got != 1 {
		t.Fatalf("%v buckets pruned, want 1", got)
	}
	if ok, _, err := accounts.Take(ctx, "login/alice", 1, burst, now); err != nil || ok {
		t.Fatalf("alice's spent bucket after pruning: %v %v, want refused", ok, err)
	}
}
