package host

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
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
