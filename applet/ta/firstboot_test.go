package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	taruntime "github.com/cofferhsm/coffer/applet/runtime"
	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/protocol"
)

// power is a machine's supply in a first-boot crash test: it fails during
// the n-th durable operation (a device write or flush, an RPMB key
// programming or authenticated write), after which nothing reaches storage.
type power struct {
	mu    sync.Mutex
	left  int // durable operations before the one the power fails in; <0: never
	off   bool
	cutIn string // the operation in progress when it failed
	dev   *storetest.CrashDevice
	// lands: an RPMB write in progress when the power fails reaches the
	// partition (its answer is lost either way).
	lands bool
}

// step accounts for one durable operation and reports whether the power
// fails during it.
func (p *power) step(what string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left < 0 || p.off {
		return false
	}
	if p.left == 0 {
		p.off, p.cutIn = true, what
		return true
	}
	p.left--
	return false
}

func (p *power) isOff() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

// cutDevice is a crash device on that supply.
type cutDevice struct {
	*storetest.CrashDevice
	p *power
}

func (d cutDevice) WriteSectors(lba uint64, b []byte) error {
	if !d.p.isOff() && d.p.step("device write") {
		d.FailAfter(0) // this write is the one in flight
	}
	return d.CrashDevice.WriteSectors(lba, b)
}

func (d cutDevice) Flush() error {
	if !d.p.isOff() && d.p.step("device flush") {
		d.FailAfter(0)
	}
	return d.CrashDevice.Flush()
}

// cutRPMB is an RPMB partition on that supply.
type cutRPMB struct {
	part storage.RPMBTransport
	p    *power
}

func (r cutRPMB) WriteRPMB(frame []byte, reliable bool) error {
	if r.p.isOff() {
		return storetest.ErrPowerCut
	}
	if req := binary.BigEndian.Uint16(frame[storage.RPMBOffType:]); req == storage.RPMBReqProgramKey || req == storage.RPMBReqWrite {
		if r.p.step("rpmb " + map[uint16]string{storage.RPMBReqProgramKey: "key programming", storage.RPMBReqWrite: "write"}[req]) {
			if r.p.lands {
				r.part.WriteRPMB(frame, reliable)
			}
			r.p.dev.PowerOff()
			return storetest.ErrPowerCut
		}
	}
	return r.part.WriteRPMB(frame, reliable)
}

func (r cutRPMB) ReadRPMB(frame []byte) error {
	if r.p.isOff() {
		return storetest.ErrPowerCut
	}
	return r.part.ReadRPMB(frame)
}

// testFuse is a fake OTP fuse in memory.
type testFuse struct{ blown bool }

func (f *testFuse) Blown() (bool, error) { return f.blown, nil }
func (f *testFuse) Blow() error          { f.blown = true; return nil }

// cutFuse is that fuse on the power supply: blowing it is durable.
type cutFuse struct {
	f *testFuse
	p *power
}

func (c cutFuse) Blown() (bool, error) {
	if c.p.isOff() {
		return false, storetest.ErrPowerCut
	}
	return c.f.Blown()
}

func (c cutFuse) Blow() error {
	if c.p.isOff() {
		return storetest.ErrPowerCut
	}
	if c.p.step("fuse blow") {
		if c.p.lands {
			c.f.Blow()
		}
		c.p.dev.PowerOff()
		return storetest.ErrPowerCut
	}
	return c.f.Blow()
}

// bootApplet starts the OS's portable core on dev and part and runs the
// applet's start (open) on it, as the device does at power on. It returns
// the ready line, a round trip to the vault, and a function that stops this
// applet (its calls fail from then on, as a stopped applet's do).
func bootApplet(t *testing.T, dev storage.Device, part storage.RPMBTransport, fuse tos.Fuse) (string, testclient.RoundTrip, func()) {
	t.Helper()
	svc := bootOS(t, dev, part, fuse)
	svc.Console = nil
	svc.Start()
	var stopped atomic.Bool
	o := taruntime.NewOS(func(op uint32, buf []byte) int32 {
		if stopped.Load() {
			return int32(api.ECLOSED)
		}
		r, _ := svc.Call(op, tos.SliceBuffer(buf))
		return r
	})
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	h, status := open(context.Background(), o, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg.Wipe()
	rt := func(ctx context.Context, req []byte) ([]byte, error) { return h(ctx, req), nil }
	return status, rt, func() { stopped.Store(true) }
}

// signingKeyOf fetches the vault's identity through rt.
func signingKeyOf(t *testing.T, rt testclient.RoundTrip) (string, error) {
	id, err := testclient.FetchIdentity(context.Background(), rt, devProvisioningPublic())
	if err != nil {
		return "", err
	}
	return string(id.SigningKey), nil
}

// A power cut at any point of a device's first boot (the fuse, the RPMB
// key, the store's format, its first open, the identity's commit, the
// development bundle's commit), whatever part of the unflushed writes
// survives it, leaves a device whose next boot serves, with an identity that
// stays the same at the boot after.
//
// Save one window, by design: a cut after the fuse is blown and before the
// eMMC took the key. The device then refuses service for ever (a blown fuse
// and a partition without a key is what a forged answer looks like), and
// never sends the key again. The test checks exactly that for this window.
func TestFirstBootSurvivesAPowerCutAnywhere(t *testing.T) {
	const sectors = 2048
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := []struct {
		name  string
		crash func(d *storetest.CrashDevice)
	}{
		{"unflushed writes lost", func(d *storetest.CrashDevice) { d.CrashKeep(nil) }},
		{"unflushed writes kept", func(d *storetest.CrashDevice) {
			keep := make([]int, len(d.Pending()))
			for i, w := range d.Pending() {
				keep[i] = w.Sectors()
			}
			d.CrashKeep(keep)
		}},
		{"unflushed writes partly kept", func(d *storetest.CrashDevice) { d.Crash(rng) }},
	}
	points, windows := 0, 0
	for cut := 0; ; cut++ {
		finished := false
		for _, lands := range []bool{false, true} {
			dev := storetest.NewCrashDevice(sectors)
			part := storetest.NewMemRPMB(1)
			fuse := &testFuse{}
			p := &power{left: cut, dev: dev, lands: lands}
			status, _, stop := bootApplet(t, cutDevice{dev, p}, cutRPMB{part, p}, cutFuse{fuse, p})
			stop()
			if !p.isOff() {
				if !strings.Contains(status, "serving") {
					t.Fatalf("first boot without a cut: %q", status)
				}
				finished = true
				break
			}
			durable := strings.HasPrefix(p.cutIn, "rpmb") || p.cutIn == "fuse blow"
			if lands && !durable {
				continue // the same cut as without lands
			}
			// Fuse blown, key not taken: the one window that fails closed.
			window := (p.cutIn == "fuse blow" && lands) || (p.cutIn == "rpmb key programming" && !lands)
			points++
			for _, o := range outcomes {
				where := p.cutIn
				if durable {
					where += map[bool]string{false: " (lost)", true: " (landed)"}[lands]
				}
				name := strings.Join([]string{where, "at durable operation", itoa(cut), o.name}, " ")
				d, r, f := dev.Clone(), part.Clone(), &testFuse{fuse.blown}
				o.crash(d)
				status, rt, stop := bootApplet(t, d, r, f)
				stop()
				if window {
					_, err := signingKeyOf(t, rt)
					_, _, rerr := storage.NewRPMBAnchor(r, [32]byte{}, 0).Read()
					var re *storage.RPMBError
					if !strings.Contains(status, "REFUSING") || !errors.Is(err, &protocol.Error{Code: protocol.CodeTampered}) ||
						!errors.As(rerr, &re) || re.Result != storage.RPMBKeyNotProgrammed {
						t.Errorf("cut in %s: fuse blown, no key: the next boot says %q, answers %v, partition %v", name, status, err, rerr)
					}
					windows++
					continue
				}
				if !strings.Contains(status, "serving") {
					t.Errorf("cut in %s: the next boot says %q", name, status)
					continue
				}
				first, err := signingKeyOf(t, rt)
				if err != nil {
					t.Errorf("cut in %s: the next boot serves no identity: %v", name, err)
					continue
				}
				status, rt, stop = bootApplet(t, d, r, f)
				stop()
				again, err := signingKeyOf(t, rt)
				if err != nil || again != first {
					t.Errorf("cut in %s: the boot after: %q, identity changed %v (%v)", name, status, again != first, err)
				}
			}
		}
		if finished {
			break
		}
	}
	if windows != 2*len(outcomes) {
		t.Fatalf("the fuse-to-key window was hit %d times, want %d", windows, 2*len(outcomes))
	}
	if points < 10 {
		t.Fatalf("only %d cut points in a first boot: the power model is not reached", points)
	}
	t.Logf("%d cut points, %d outcomes each", points, len(outcomes))
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func devProvisioningPublic() ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(qemu.DevProvisioningSeed[:]).Public().(ed25519.PublicKey)
}
