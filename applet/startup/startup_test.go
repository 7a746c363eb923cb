package startup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/protocol"
)

var sealingKey = [32]byte{3}

func options(create bool) Options {
	return Options{
		Store:  store.Options{SealingKey: sealingKey},
		Vault:  vault.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Create: create,
	}
}

// power fails during its n-th durable operation (a device write or flush,
// an anchor write); nothing reaches storage after that.
type power struct {
	mu    sync.Mutex
	left  int
	off   bool
	inRAM bool // the cut hit an anchor write (guarded by mu)
	dev   *storetest.CrashDevice
	lands bool // an anchor write the power fails in takes effect
}

func (p *power) step() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return false
	}
	if p.left == 0 {
		p.off = true
		return true
	}
	p.left--
	return false
}

type cutDevice struct {
	*storetest.CrashDevice
	p *power
}

func (d cutDevice) WriteSectors(lba uint64, b []byte) error {
	if d.p.step() {
		d.FailAfter(0)
	}
	return d.CrashDevice.WriteSectors(lba, b)
}

func (d cutDevice) Flush() error {
	if d.p.step() {
		d.FailAfter(0)
	}
	return d.CrashDevice.Flush()
}

type cutAnchor struct {
	a storage.Anchor
	p *power
}

func (c cutAnchor) Read() ([storage.AnchorSize]byte, uint32, error) {
	c.p.mu.Lock()
	off := c.p.off
	c.p.mu.Unlock()
	if off {
		return [storage.AnchorSize]byte{}, 0, storetest.ErrPowerCut
	}
	return c.a.Read()
}

func (c cutAnchor) Write(data [storage.AnchorSize]byte) (uint32, error) {
	c.p.mu.Lock()
	off := c.p.off
	c.p.mu.Unlock()
	if off {
		return 0, storetest.ErrPowerCut
	}
	if c.p.step() {
		c.p.mu.Lock()
		c.p.inRAM = true
		c.p.mu.Unlock()
		if c.p.lands {
			c.a.Write(data)
		}
		c.p.dev.PowerOff()
		return 0, storetest.ErrPowerCut
	}
	return c.a.Write(data)
}

// crashOutcomes returns every way the unflushed writes of d can survive a
// power cut — each write lost, kept, or (the one in flight) torn halfway —
// up to a bound, as keep vectors for CrashKeep.
func crashOutcomes(d *storetest.CrashDevice) [][]int {
	pending := d.Pending()
	outs := [][]int{{}}
	for _, w := range pending {
		choices := []int{0, w.Sectors()}
		if w.InFlight && w.Sectors() > 1 {
			choices = append(choices, w.Sectors()/2)
		}
		var next [][]int
		for _, o := range outs {
			for _, c := range choices {
				next = append(next, append(append([]int(nil), o...), c))
			}
		}
		outs = next
		if len(outs) > 64 {
			break // the prefix's combinations; the rest of the writes lost
		}
	}
	return outs
}

// A power cut at every durable operation of a first start, with every way
// the unflushed writes can survive it, leaves a store the next start
// completes; the identity it has then stays.
func TestFirstStartRestartsAfterACutAnywhere(t *testing.T) {
	ctx := context.Background()
	points, outcomes := 0, 0
	for cut := 0; ; cut++ {
		done := false
		for _, lands := range []bool{false, true} {
			dev := storetest.NewCrashDevice(512)
			anc, part := storetest.NewMemAnchor([32]byte{9})
			p := &power{left: cut, dev: dev, lands: lands}
			v, err := Open(ctx, cutDevice{dev, p}, cutAnchor{anc, p}, options(true))
			if !p.off {
				if err != nil || !v.Formatted || !v.Created {
					t.Fatalf("uncut first start: %v", err)
				}
				v.Close()
				done = true
				break
			}
			if err == nil {
				v.Close()
			}
			if lands && !p.inRAM {
				continue
			}
			points++
			for _, keep := range crashOutcomes(dev) {
				outcomes++
				d, r := dev.Clone(), part.Clone()
				d.CrashKeep(keep)
				a := storage.NewRPMBAnchor(r, [32]byte{9}, 0)
				v, err := Open(ctx, d, a, options(true))
				if err != nil {
					t.Fatalf("cut at operation %d (anchor write lands %v), writes kept %v: next start: %v", cut, lands, keep, err)
				}
				id := v.Identity().SigningKey
				v.Close()
				v, err = Open(ctx, d, a, options(true))
				if err != nil || !bytes.Equal(v.Identity().SigningKey, id) || v.Formatted || v.Created {
					t.Fatalf("cut at operation %d, writes kept %v: the start after: %v", cut, keep, err)
				}
				v.Close()
			}
		}
		if done {
			break
		}
	}
	if points < 8 {
		t.Fatalf("only %d cut points", points)
	}
	t.Logf("%d cut points, %d outcomes", points, outcomes)
}

// A store that holds records but no identity is refused, not given one, and
// its records stay.
func TestRecordsWithoutIdentityRefused(t *testing.T) {
	ctx := context.Background()
	dev := storetest.NewMemDevice(512)
	anc, _ := storetest.NewMemAnchor([32]byte{9})
	so := store.Options{SealingKey: sealingKey}
	if err := store.Format(dev, anc, so); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dev, anc, so)
	if err != nil {
		t.Fatal(err)
	}
	st.Put([]byte("someone"), []byte("a record"))
	if _, err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := Open(ctx, dev, anc, options(true)); !errors.Is(err, vault.ErrNotInitialised) {
		t.Fatalf("Open: %v, want not initialised", err)
	}
	st, err = store.Open(dev, anc, so)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rec, ok, err := st.Get([]byte("someone")); err != nil || !ok || string(rec) != "a record" {
		t.Fatalf("the record after the refused start: %q %v %v", rec, ok, err)
	}
	if n := st.Stats().Records; n != 1 {
		t.Fatalf("%d records, want 1 (no identity created)", n)
	}
}

// A vault whose device was wiped (or replaced) under its anchor is refused,
// never formatted again: the anchor is not written, and putting the device
// back brings everything back.
func TestWipedDeviceNeverReformatted(t *testing.T) {
	ctx := context.Background()
	dev := storetest.NewMemDevice(512)
	anc, part := storetest.NewMemAnchor([32]byte{9})
	v, err := Open(ctx, dev, anc, options(true))
	if err != nil {
		t.Fatal(err)
	}
	id := v.Identity().SigningKey
	v.Close()
	counter := part.Counter()
	for name, d := range map[string]storage.Device{"wiped": storetest.NewMemDevice(512), "another store": func() storage.Device {
		other := storetest.NewMemDevice(512)
		oa, _ := storetest.NewMemAnchor([32]byte{9})
		if err := store.Format(other, oa, store.Options{SealingKey: sealingKey}); err != nil {
			t.Fatal(err)
		}
		return other
	}()} {
		_, err := Open(ctx, d, anc, options(true))
		if !errors.Is(err, storage.ErrTampered) {
			t.Fatalf("%s: %v, want tampered", name, err)
		}
		if part.Counter() != counter {
			t.Fatalf("%s: the anchor was written", name)
		}
	}
	v, err = Open(ctx, dev, anc, options(true))
	if err != nil || !bytes.Equal(v.Identity().SigningKey, id) || v.Formatted || v.Created {
		t.Fatalf("the device put back: %v", err)
	}
	v.Close()
}

// Without Create, a never-formatted or empty store is an error and nothing
// is written.
func TestNoCreateWritesNothing(t *testing.T) {
	ctx := context.Background()
	dev := storetest.NewCrashDevice(512)
	anc, part := storetest.NewMemAnchor([32]byte{9})
	if _, err := Open(ctx, dev, anc, options(false)); !errors.Is(err, store.ErrNotFormatted) {
		t.Fatalf("never formatted: %v", err)
	}
	if w, f := dev.Counts(); w != 0 || f != 0 || part.Counter() != 0 {
		t.Fatalf("wrote %d, flushed %d, anchor counter %d", w, f, part.Counter())
	}
	if err := store.Format(dev, anc, store.Options{SealingKey: sealingKey}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dev, anc, options(false)); !errors.Is(err, vault.ErrNotInitialised) {
		t.Fatalf("empty store: %v", err)
	}
}

// TestStatusSignsTheStoresOccupancy: the status a vault opened here signs
// carries its store's record count and capacity estimate, the figures
// cofferd places new users by, and follows the store as records are added.
func TestStatusSignsTheStoresOccupancy(t *testing.T) {
	ctx := context.Background()
	dev := storetest.NewMemDevice(1 << 12)
	anc, _ := storetest.NewMemAnchor([32]byte{9})
	v, err := Open(ctx, dev, anc, options(true))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	status := func() *protocol.Status {
		t.Helper()
		req := protocol.NewStatusRequest()
		b, err := protocol.Encode(protocol.TypeStatus, req)
		if err != nil {
			t.Fatal(err)
		}
		var reply protocol.StatusReply
		if err := protocol.Decode(v.Handle(ctx, b), protocol.TypeStatus, &reply); err != nil {
			t.Fatal(err)
		}
		st, err := reply.Verify(v.Identity().SigningKey, req.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := status()
	stats := v.Store.Stats()
	if before.Records != stats.Records || before.RecordCapacity != stats.RecordCapacity {
		t.Fatalf("status signs %d records of %d, the store has %d of %d", before.Records, before.RecordCapacity, stats.Records, stats.RecordCapacity)
	}
	if before.RecordCapacity <= before.Records {
		t.Fatalf("a new store of %d sectors reports %d records of %d", dev.Sectors(), before.Records, before.RecordCapacity)
	}
	const added = 50
	for i := range added {
		if err := v.Store.Put([]byte(fmt.Sprint("extra", i)), []byte("r")); err != nil {
			t.Fatal(err)
		}
	}
	after := status() // waits for the commit of what was staged
	if after.Records != before.Records+added {
		t.Fatalf("after %d records were added the status signs %d, was %d", added, after.Records, before.Records)
	}
}
