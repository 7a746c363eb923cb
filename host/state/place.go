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
// the first name. It reads nothing but its arguments, so that every host
// sharing a registry places alike.
func Choose(devices []Device, now time.Time, maxAge time.Duration) (string, error) {
	best, bestScore, bestFree := -1, 0.0, uint64(0)
	for i, d := range devices {
		if d.State != Active || !d.Healthy || now.Sub(d.Seen) > maxAge || d.Seen.After(now.Add(maxAge)) {
			continue
		}
		capacity := d.Capacity
		if capacity == 0 {
			capacity = DefaultCapacity
		}
		if d.Accounts >= capacity {
			continue
		}
		free := capacity - d.Accounts
		score := float64(free) / float64(capacity)
		if d.AnchorBudget > 0 {
			if d.AnchorWrites >= d.AnchorBudget {
				continue
			}
			score = min(score, float64(d.AnchorBudget-d.AnchorWrites)/float64(d.AnchorBudget))
		}
		if best < 0 || score > bestScore || (score == bestScore && (free > bestFree || (free == bestFree && d.Name < devices[best].Name))) {
			best, bestScore, bestFree = i, score, free
		}
	}
	if best < 0 {
		return "", ErrNoDevice
	}
	return devices[best].Name, nil
}
