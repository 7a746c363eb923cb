package state

import (
	"errors"
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
// A device's capacity is the smaller of the record capacity its signed
// status reports and the operator's limit, whichever are set
// (DefaultCapacity if neither), and what it uses is the larger of the
// records its status reports and the accounts placed on it: accounts placed
// since its last status, and records that belong to no account here, both
// count.
func Choose(devices []Device, now time.Time, maxAge time.Duration) (string, error) {
	best, bestScore, bestFree := -1, 0.0, uint64(0)
	for i, d := range devices {
		if d.State != Active || !d.Healthy || now.Sub(d.Seen) > maxAge || d.Seen.After(now.Add(maxAge)) {
			continue
		}
		capacity, used := d.PlacementCapacity(), max(d.Accounts, d.Records)
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
// smaller of its signed record capacity and the operator's limit, whichever
// are set, else DefaultCapacity.
func (d *Device) PlacementCapacity() uint64 {
	switch {
	case d.Capacity == 0 && d.RecordCapacity == 0:
		return DefaultCapacity
	case d.Capacity == 0:
		return d.RecordCapacity
	case d.RecordCapacity == 0:
		return d.Capacity
	}
	return min(d.Capacity, d.RecordCapacity)
}
