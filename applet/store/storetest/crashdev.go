package storetest

import (
	"errors"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/internal/storage"
)

// ErrPowerCut is returned by a CrashDevice (and by test anchors) once the
// simulated power has failed, until the device is "rebooted" by one of the
// Crash methods.
var ErrPowerCut = errors.New("storetest: simulated power cut")

// CrashDevice is a memory device for crash tests that models a volatile write
// cache: a write is visible to reads at once but only reaches the simulated
// medium at the next Flush. A power cut (Crash, CrashKeep) keeps an arbitrary
// choice of the unflushed writes, each possibly torn at a sector boundary,
// and drops the rest; the write in flight when the power failed (see
// FailAfter) is one of them.
//
// Killing a process is not a power cut: the host's page cache survives it.
// This device is how the tests reach the states a real cut can leave.
type CrashDevice struct {
	mu      sync.Mutex
	sectors uint64
	durable map[uint64]*[storage.SectorSize]byte // what survives a power cut
	cur     map[uint64]*[storage.SectorSize]byte // what reads see
	pending []PendingWrite

	budget  int // write/flush calls left before the power fails; <0: never
	off     bool
	latency time.Duration

	writes, flushes uint64
}

// PendingWrite is a write that has not been flushed yet.
type PendingWrite struct {
	LBA  uint64
	Data []byte
	// InFlight marks the write during which the power failed: it never
	// returned to its caller.
	InFlight bool
}

// Sectors of the write.
func (w PendingWrite) Sectors() int { return len(w.Data) / storage.SectorSize }

// NewCrashDevice returns a zero-filled crash-simulating device.
func NewCrashDevice(sectors uint64) *CrashDevice {
	return &CrashDevice{
		sectors: sectors,
		durable: make(map[uint64]*[storage.SectorSize]byte),
		cur:     make(map[uint64]*[storage.SectorSize]byte),
		budget:  -1,
	}
}

// SetFlushLatency makes every Flush take at least lat.
func (d *CrashDevice) SetFlushLatency(lat time.Duration) {
	d.mu.Lock()
	d.latency = lat
	d.mu.Unlock()
}

// FailAfter arms a power cut: the next n writes and flushes succeed, and the
// one after that fails with ErrPowerCut. If that call is a write, it becomes a
// pending write marked InFlight (it may survive torn). From then on every call
// fails with ErrPowerCut until a Crash method reboots the device. A negative
// n disarms.
func (d *CrashDevice) FailAfter(n int) {
	d.mu.Lock()
	d.budget = n
	d.mu.Unlock()
}

// PowerOff cuts the power now, with no write in flight.
func (d *CrashDevice) PowerOff() {
	d.mu.Lock()
	d.off = true
	d.mu.Unlock()
}

// Off reports whether the power has failed.
func (d *CrashDevice) Off() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.off
}

// Pending returns the unflushed writes in issue order.
func (d *CrashDevice) Pending() []PendingWrite {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]PendingWrite(nil), d.pending...)
}

// Clone returns an independent copy of the device, pending writes and power
// state included, so that several outcomes of one power cut can be explored.
func (d *CrashDevice) Clone() *CrashDevice {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Sector buffers are never modified in place, so they can be shared.
	return &CrashDevice{
		sectors: d.sectors,
		durable: maps.Clone(d.durable),
		cur:     maps.Clone(d.cur),
		pending: append([]PendingWrite(nil), d.pending...),
		budget:  d.budget,
		off:     d.off,
		latency: d.latency,
	}
}

// CrashKeep simulates a power cut in which, for each pending write i, the
// first keep[i] sectors reach the medium (0: lost; all of them: survived; in
// between: torn at a sector boundary) and the rest are lost. Missing entries
// count as 0. Writes are applied in issue order. The device is then powered
// on again with no pending writes.
func (d *CrashDevice) CrashKeep(keep []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, w := range d.pending {
		k := 0
		if i < len(keep) {
			k = min(max(keep[i], 0), w.Sectors())
		}
		d.applyDurable(w, func(j int) bool { return j < k })
	}
	d.reboot()
}

// Crash simulates a power cut with a random outcome: each completed pending
// write is lost, kept, or kept for a random subset of its sectors (flash may
// persist any cached sector), and the write in flight keeps a random prefix.
func (d *CrashDevice) Crash(r *rand.Rand) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.pending {
		n := w.Sectors()
		switch {
		case w.InFlight:
			k := r.IntN(n + 1)
			d.applyDurable(w, func(j int) bool { return j < k })
		default:
			switch r.IntN(3) {
			case 0: // lost
			case 1:
				d.applyDurable(w, func(int) bool { return true })
			default:
				d.applyDurable(w, func(int) bool { return r.IntN(2) == 0 })
			}
		}
	}
	d.reboot()
}

func (d *CrashDevice) applyDurable(w PendingWrite, keep func(j int) bool) {
	for j := 0; j < w.Sectors(); j++ {
		if keep(j) {
			s := new([storage.SectorSize]byte)
			copy(s[:], w.Data[j*storage.SectorSize:])
			d.durable[w.LBA+uint64(j)] = s
		}
	}
}

func (d *CrashDevice) reboot() {
	d.pending = nil
	d.cur = maps.Clone(d.durable)
	d.off = false
	d.budget = -1
}

// spend accounts for one write or flush; it reports whether the power fails
// during this call.
func (d *CrashDevice) spend() bool {
	if d.budget < 0 {
		return false
	}
	if d.budget == 0 {
		d.off = true
		return true
	}
	d.budget--
	return false
}

func (d *CrashDevice) Sectors() uint64 { return d.sectors }

func (d *CrashDevice) ReadSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPowerCut
	}
	for i := 0; i < len(p); i += storage.SectorSize {
		if s := d.cur[lba+uint64(i/storage.SectorSize)]; s != nil {
			copy(p[i:i+storage.SectorSize], s[:])
		} else {
			clear(p[i : i+storage.SectorSize])
		}
	}
	return nil
}

func (d *CrashDevice) WriteSectors(lba uint64, p []byte) error {
	if err := storage.CheckRange(lba, len(p), d.sectors); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPowerCut
	}
	w := PendingWrite{LBA: lba, Data: append([]byte(nil), p...)}
	if d.spend() {
		w.InFlight = true
		d.pending = append(d.pending, w)
		return ErrPowerCut
	}
	d.pending = append(d.pending, w)
	for i := 0; i < len(p); i += storage.SectorSize {
		s := new([storage.SectorSize]byte)
		copy(s[:], p[i:])
		d.cur[lba+uint64(i/storage.SectorSize)] = s
	}
	d.writes++
	return nil
}

func (d *CrashDevice) Flush() error {
	d.mu.Lock()
	lat := d.latency
	d.mu.Unlock()
	if lat > 0 {
		time.Sleep(lat)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return ErrPowerCut
	}
	if d.spend() {
		return ErrPowerCut
	}
	for _, w := range d.pending {
		d.applyDurable(w, func(int) bool { return true })
	}
	d.pending = nil
	d.flushes++
	return nil
}

// Counts returns the number of completed writes and flushes.
func (d *CrashDevice) Counts() (writes, flushes uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes, d.flushes
}
