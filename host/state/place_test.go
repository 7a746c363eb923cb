package state

import (
	"errors"
	"math"
	"math/big"
	"testing"
	"time"
)

// devicesFrom decodes a fuzzer's bytes into a device set: up to 12 devices
// with states, health, ages, capacities, budgets and counts drawn from
// small and edge values, names from a small alphabet (so they repeat).
func devicesFrom(b []byte) []Device {
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	edge := []uint64{0, 1, 2, 3, DefaultCapacity - 1, DefaultCapacity, DefaultCapacity + 1, math.MaxUint64}
	val := func() uint64 {
		c := next()
		if c < 16 {
			return edge[c%8]
		}
		return uint64(c) << (next() % 24)
	}
	now := time.Unix(1_800_000_000, 0)
	var ds []Device
	for n := int(next() % 13); len(ds) < n; {
		f := next()
		d := Device{
			Name:         string([]byte{'a' + next()%6, '0' + next()%3}),
			State:        []DeviceState{Active, Active, Draining, Retired}[f%4],
			Healthy:      f&4 == 0,
			Capacity:     val(),
			AnchorBudget: val(),
			Accounts:     val(),
			AnchorWrites: val(),
			Seen:         now.Add(time.Duration(int8(next())) * 10 * time.Second),
		}
		d.Records, d.RecordCapacity, d.AccountsReported = val(), val(), val()
		if f&8 != 0 {
			d.Seen = time.Time{}
		}
		ds = append(ds, d)
	}
	return ds
}

// limit and inUse restate what Choose counts, independently: the signed
// capacity under a ceiling (the operator's, else the default), and the
// records counted at the last report plus the accounts placed since, never
// below the accounts, computed in big integers.
func limit(d Device) uint64 {
	ceiling := d.Capacity
	if ceiling == 0 {
		ceiling = DefaultCapacity
	}
	if d.RecordCapacity != 0 && d.RecordCapacity < ceiling {
		return d.RecordCapacity
	}
	return ceiling
}

func inUse(d Device) uint64 {
	u := new(big.Int).SetUint64(d.Records)
	if d.Accounts > d.AccountsReported {
		u.Add(u, new(big.Int).SetUint64(d.Accounts-d.AccountsReported))
	}
	if a := new(big.Int).SetUint64(d.Accounts); u.Cmp(a) < 0 {
		u = a
	}
	if !u.IsUint64() {
		return math.MaxUint64
	}
	return u.Uint64()
}

// eligible and score restate Choose's rule, independently.
func eligible(d Device, now time.Time, maxAge time.Duration) bool {
	age := now.Sub(d.Seen)
	return d.State == Active && d.Healthy && age <= maxAge && age >= -maxAge &&
		inUse(d) < limit(d) && (d.AnchorBudget == 0 || d.AnchorWrites < d.AnchorBudget)
}

func score(d Device) (float64, uint64) {
	free := limit(d) - inUse(d)
	s := float64(free) / float64(limit(d))
	if d.AnchorBudget > 0 {
		s = min(s, float64(d.AnchorBudget-d.AnchorWrites)/float64(d.AnchorBudget))
	}
	return s, free
}

func checkChoose(t *testing.T, ds []Device) {
	now := time.Unix(1_800_000_000, 0)
	const maxAge = 300 * time.Second
	got, err := Choose(ds, now, maxAge)
	any := false
	for _, d := range ds {
		any = any || eligible(d, now, maxAge)
	}
	if err != nil {
		if !errors.Is(err, ErrNoDevice) || any {
			t.Fatalf("Choose: %v, with an eligible device in %+v", err, ds)
		}
		return
	}
	if !any {
		t.Fatalf("Choose picked %q among no eligible device: %+v", got, ds)
	}
	// The first device of that name is the one chosen (names repeat
	// here, never in a registry).
	var c Device
	found := false
	for _, d := range ds {
		if d.Name == got && eligible(d, now, maxAge) {
			s, f := score(d)
			cs, cf := score(c)
			if !found || s > cs || (s == cs && (f > cf || (f == cf && d.Accounts < c.Accounts))) {
				c, found = d, true
			}
		}
	}
	if !found {
		t.Fatalf("Choose picked %q, which is not eligible: %+v", got, ds)
	}
	cs, cf := score(c)
	for _, d := range ds {
		if !eligible(d, now, maxAge) {
			continue
		}
		s, f := score(d)
		if s > cs || (s == cs && (f > cf || (f == cf && (d.Accounts < c.Accounts || (d.Accounts == c.Accounts && d.Name < c.Name))))) {
			t.Fatalf("Choose picked %+v (score %v, free %d) over %+v (score %v, free %d)", c, cs, cf, d, s, f)
		}
	}
}

func FuzzChoose(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 1, 1, 20, 3, 0, 0, 0, 0, 4, 2, 2, 30, 2, 9, 1, 0, 0, 1, 0, 0, 50, 1, 9, 1, 0, 0})
	f.Add([]byte{12, 8, 0, 0, 7, 7, 7, 7, 0, 1, 0, 0, 5, 0, 5, 4, 200, 3, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, b []byte) { checkChoose(t, devicesFrom(b)) })
}

// Property run in `go test`: random device sets of every size.
func TestChooseProperty(t *testing.T) {
	seed := uint64(1)
	for range 20000 {
		b := make([]byte, 120)
		for i := range b {
			seed ^= seed << 13
			seed ^= seed >> 7
			seed ^= seed << 17
			b[i] = byte(seed)
		}
		checkChoose(t, devicesFrom(b))
	}
}

// The rule's stated cases: the scarcer of records and anchor budget counts;
// ties go to the most free records, then the first name; stale, future,
// unhealthy, draining and full devices are passed over.
func TestChooseCases(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dev := func(name string, capacity, accounts, budget, writes uint64) Device {
		return Device{Name: name, State: Active, Healthy: true, Seen: now, Capacity: capacity, Accounts: accounts, AnchorBudget: budget, AnchorWrites: writes}
	}
	reported := func(d Device, records, capacity uint64) Device {
		d.Records, d.RecordCapacity = records, capacity
		return d
	}
	for _, c := range []struct {
		want string
		ds   []Device
	}{
		{"b", []Device{dev("a", 100, 10, 100, 90), dev("b", 100, 50, 0, 0)}},
		{"b", []Device{dev("a", 100, 50, 0, 0), dev("b", 200, 100, 0, 0)}},
		{"a", []Device{dev("b", 100, 50, 0, 0), dev("a", 100, 50, 0, 0)}},
		{"", []Device{dev("a", 100, 100, 0, 0), dev("b", 100, 0, 10, 10)}},
		{"c", []Device{
			func() Device { d := dev("a", 100, 0, 0, 0); d.Seen = now.Add(-time.Hour); return d }(),
			func() Device { d := dev("b", 100, 0, 0, 0); d.Seen = now.Add(time.Hour); return d }(),
			func() Device { d := dev("d", 100, 0, 0, 0); d.Healthy = false; return d }(),
			func() Device { d := dev("e", 100, 0, 0, 0); d.State = Draining; return d }(),
			dev("c", 100, 99, 0, 0),
		}},
		// The signed status counts: a device whose store reports
		// itself nearly full is passed over however few accounts
		// were placed on it; records of no account here count; the
		// operator's limit caps what the device reports.
		{"b", []Device{reported(dev("a", 0, 1, 0, 0), 900, 1000), reported(dev("b", 0, 500, 0, 0), 10, 1000)}},
		{"b", []Device{reported(dev("a", 0, 0, 0, 0), 600, 1000), dev("b", 1000, 500, 0, 0)}},
		{"a", []Device{reported(dev("a", 0, 0, 0, 0), 0, 2000), dev("b", 1000, 0, 0, 0)}},
		{"b", []Device{reported(dev("a", 100, 60, 0, 0), 0, 1_000_000), reported(dev("b", 0, 60, 0, 0), 0, 1000)}},
		{"", []Device{reported(dev("a", 0, 0, 0, 0), 1000, 1000)}},
		// The vault's identity record makes a device with one account
		// look as full as an empty one: the fewer accounts win the tie.
		{"b", []Device{reported(dev("a", 0, 1, 0, 0), 1, 1000), reported(dev("b", 0, 0, 0, 0), 1, 1000)}},
		// A device signing an absurd capacity is held to the default
		// (only the operator's limit goes beyond): with 1000 accounts
		// it does not draw the next one from an honest empty device.
		{"b", []Device{reported(dev("a", 0, 1000, 0, 0), 0, math.MaxUint64), reported(dev("b", 0, 0, 0, 0), 1, DefaultCapacity)}},
		{"a", []Device{reported(dev("a", 2*DefaultCapacity, 1000, 0, 0), 0, math.MaxUint64), reported(dev("b", 0, 0, 0, 0), 1000, DefaultCapacity)}},
		// Accounts placed since the last status count on top of its
		// records, even when the vault holds more records than there
		// are accounts (records of accounts taken off stay): 990
		// records and 10 new accounts fill a capacity of 1000.
		{"", []Device{func() Device { d := reported(dev("a", 0, 10, 0, 0), 990, 1000); return d }()}},
		{"a", []Device{func() Device { d := reported(dev("a", 0, 10, 0, 0), 990, 1000); d.AccountsReported = 1; return d }()}},
	} {
		got, err := Choose(c.ds, now, time.Minute)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("Choose %+v: %q %v, want %q", c.ds, got, err, c.want)
		}
	}
}
