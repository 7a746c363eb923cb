package state

import (
	"errors"
	"math"
	"time"
)

// ErrNoDevice is returned by Choose when no device can take a new account.
var ErrNoDevice = errors.New("state: no active, healthy device with free capacity")

// Choose picks the device a new account is placed on: among the devices
// that are active, healthy, seen within maxAge of now, and below both their
// capacity and their anchor-write budget, the one with the largest free
// share of the scarcer of the two; ties go to the most free records, then to
// the fewest accounts placed (records that are no account's, such as the
// vault's identity, make devices with a few accounts look alike), then to
// the first name. It reads nothing but its arguments, so that every host
// sharing a registry places alike.
//
// A device's capacity is PlacementCapacity, and what it uses is
// PlacementUse: the records its status counted and the accounts placed on
// it since, or the accounts placed on it if more.
func Choose(devices []Device, now time.Time, maxAge time.Duration) (string, error) {
	best, bestScore, bestFree := -1, 0.0, uint64(0)
	for i, d := range devices {
		if d.State != Active || !d.Healthy || now.Sub(d.Seen) > maxAge || d.Seen.After(now.Add(maxAge)) {
			continue
		}
		capacity, used := d.PlacementCapacity(), d.PlacementUse()
		if used >= capacity {
			continue
		}
		free := capacity - used
		score := float64(free) / float64(capacity)
		if d.AnchorBudget > 0 {
			if d.AnchorWrites >= d.AnchorBudget {
				continue
			}
			score = min(score, float64(d.AnchorBudget-d.AnchorWrites)/float64(d.AnchorBudget))
		}
		if best < 0 || score > bestScore || (score == bestScore && (free > bestFree || (free == bestFree && fewer(d, devices[best])))) {
			best, bestScore, bestFree = i, score, free
		}
	}
	if best < 0 {
		return "", ErrNoDevice
	}
	return devices[best].Name, nil
}

// fewer breaks Choose's last ties: fewer accounts, then the first name.
func fewer(a, b Device) bool {
	return a.Accounts < b.Accounts || (a.Accounts == b.Accounts && a.Name < b.Name)
}

// PlacementCapacity is how many records Choose lets the device hold: the
// record capacity its vault signs, capped at the operator's limit if one is
// set and else at DefaultCapacity; the operator's limit (or the default)
// while the vault has signed none. The cap keeps a device that signs an
// absurd capacity (nothing but the device vouches for it) from drawing
// every new account of the realm: only the operator's limit can raise it.
func (d *Device) PlacementCapacity() uint64 {
	limit := d.Capacity
	if limit == 0 {
		limit = DefaultCapacity
	}
	if d.RecordCapacity == 0 {
		return limit
	}
	return min(limit, d.RecordCapacity)
}

// PlacementUse is how many records Choose counts the device as holding:
// those its last status counted plus the accounts placed on it since
// (their records are on their way), and never fewer than the accounts
// placed on it. Accounts taken off since keep their records in the vault,
// so they lower nothing.
func (d *Device) PlacementUse() uint64 {
	since := uint64(0)
	if d.Accounts > d.AccountsReported {
		since = d.Accounts - d.AccountsReported
	}
	return max(d.Accounts, satAdd(d.Records, since))
}

// satAdd is a + b, or the largest uint64 if that overflows.
func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}
