package host

import (
	"context"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/applet/vault"
)

// SoftDevice serves a vault.Vault in the test's process as a Device, so
// that tests of the HTTP side need no socket. cofferd itself has no such
// device: it links no vault code, and reaches the software vault over a
// unix socket like any other.
type SoftDevice struct {
	name string
	v    *vault.Vault
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewSoftDevice serves v as a device. Close stops the device's expiry
// ticker but leaves v to its owner.
func NewSoftDevice(name string, v *vault.Vault) *SoftDevice {
	d := &SoftDevice{name: name, v: v, stop: make(chan struct{})}
	d.wg.Add(1)
	go d.expire()
	return d
}

func (d *SoftDevice) expire() {
	defer d.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.v.Expire()
		}
	}
}

func (d *SoftDevice) Name() string    { return d.name }
func (d *SoftDevice) Connected() bool { return true }

func (d *SoftDevice) Describe() DeviceInfo {
	return DeviceInfo{Kind: "soft", Insecure: true, Connects: 1}
}

func (d *SoftDevice) RoundTrip(ctx context.Context, request []byte) ([]byte, error) {
	return d.v.Handle(ctx, request), nil
}

// Close stops the device's expiry ticker.
func (d *SoftDevice) Close() error {
	d.once.Do(func() {
		close(d.stop)
		d.wg.Wait()
	})
	return nil
}
