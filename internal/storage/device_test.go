package storage

import (
	"errors"
	"testing"
)

// The one range check every device uses: whole sectors, inside the device,
// and no wrap-around of lba+count on any platform.
func TestCheckRange(t *testing.T) {
	const sectors = 64
	for _, c := range []struct {
		lba uint64
		n   int
		ok  bool
	}{
		{0, 0, true}, {0, SectorSize, true}, {63, SectorSize, true}, {0, 64 * SectorSize, true}, {64, 0, true},
		{63, 2 * SectorSize, false}, {64, SectorSize, false}, {65, 0, false}, {0, 100, false}, {0, -SectorSize, false},
		{1 << 63, SectorSize, false}, {^uint64(0), SectorSize, false}, {1, 64 * SectorSize, false},
	} {
		err := CheckRange(c.lba, c.n, sectors)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrRange)) {
			t.Errorf("CheckRange(%d, %d, %d) = %v, want ok %v", c.lba, c.n, sectors, err, c.ok)
		}
	}
}
