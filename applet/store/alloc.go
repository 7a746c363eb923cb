package store

import "errors"

// ErrFull means the device has no room for the commit. Nothing was
// committed; the changes stay staged.
var ErrFull = errors.New("store: device full")

// allocator tracks which sectors the committed tree uses. It is rebuilt at
// Open by walking the tree and kept in RAM; nothing about free space is
// stored on the device.
//
// The device is divided into groups of 8 sectors. A node takes a whole group;
// record slots take single sectors and are packed into groups set aside for
// records, preferring groups that already hold records, so that groups free
// up whole for nodes.
type allocator struct {
	used    []uint8  // per group, bit i set: sector i used
	stack   []uint64 // groups that may have free record slots
	stacked []bool   // group is on stack
	cursor  uint64   // next group to look at for a free group
	free    uint64   // free sectors
}

func newAllocator(groups uint64) *allocator {
	return &allocator{
		used:    make([]uint8, groups),
		stacked: make([]bool, groups),
		free:    groups * nodeSectors,
		cursor:  1,
	}
}

func (a *allocator) groups() uint64 { return uint64(len(a.used)) }

// markNode and markRecord claim sectors found in use while walking the tree;
// they report false if the sectors are outside the device or already in use.
func (a *allocator) markNode(loc uint64) bool {
	g := loc / nodeSectors
	if loc%nodeSectors != 0 || g >= a.groups() || a.used[g] != 0 {
		return false
	}
	a.used[g] = 0xff
	a.free -= nodeSectors
	return true
}

func (a *allocator) markRecord(loc uint64) bool {
	g, bit := loc/nodeSectors, uint8(1)<<(loc%nodeSectors)
	if g >= a.groups() || a.used[g]&bit != 0 {
		return false
	}
	a.used[g] |= bit
	a.free--
	a.push(g)
	return true
}

func (a *allocator) push(g uint64) {
	if !a.stacked[g] && a.used[g] != 0xff {
		a.stacked[g] = true
		a.stack = append(a.stack, g)
	}
}

// freeGroup finds a group with no sector in use, scanning from the cursor.
func (a *allocator) freeGroup() (uint64, error) {
	n := a.groups()
	for i := uint64(0); i < n; i++ {
		g := a.cursor
		if a.cursor++; a.cursor >= n {
			a.cursor = 1
		}
		if g != 0 && a.used[g] == 0 {
			return g, nil
		}
	}
	return 0, ErrFull
}

func (a *allocator) allocNode() (uint64, error) {
	g, err := a.freeGroup()
	if err != nil {
		return 0, err
	}
	a.used[g] = 0xff
	a.free -= nodeSectors
	return g * nodeSectors, nil
}

func (a *allocator) allocRecord() (uint64, error) {
	for len(a.stack) > 0 {
		g := a.stack[len(a.stack)-1]
		u := a.used[g]
		if u == 0 || u == 0xff {
			// Stale: the group filled up or emptied; an empty group is
			// kept for nodes.
			a.stack = a.stack[:len(a.stack)-1]
			a.stacked[g] = false
			continue
		}
		return a.takeSlot(g), nil
	}
	g, err := a.freeGroup()
	if err != nil {
		return 0, err
	}
	loc := a.takeSlot(g)
	a.push(g)
	return loc, nil
}

func (a *allocator) takeSlot(g uint64) uint64 {
	u := a.used[g]
	for i := uint64(0); i < nodeSectors; i++ {
		if u&(1<<i) == 0 {
			a.used[g] |= 1 << i
			a.free--
			return g*nodeSectors + i
		}
	}
	panic("store: takeSlot on a full group")
}

func (a *allocator) freeNode(loc uint64) {
	g := loc / nodeSectors
	if a.used[g] != 0xff {
		panic("store: freeing a node group not in use")
	}
	a.used[g] = 0
	a.free += nodeSectors
}

func (a *allocator) freeRecord(loc uint64) {
	g, bit := loc/nodeSectors, uint8(1)<<(loc%nodeSectors)
	if a.used[g]&bit == 0 {
		panic("store: freeing a record slot not in use")
	}
	a.used[g] &^= bit
	a.free++
	if a.used[g] != 0 {
		a.push(g)
	}
}
