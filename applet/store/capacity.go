package store

// What a record costs in space, for estimateCapacity.
const (
	// calibrationRecords is how many records a store must hold before the
	// space they use says what the next ones will cost; below it, the
	// format's own figure is used.
	calibrationRecords = 1024

	// formatSixteenths is that figure, in sixteenths of a sector per
	// record: the record's slot (16) and its share of a leaf filled to
	// about two thirds of MaxEntries (8 sectors / 26 records ≈ 5), rounded
	// up to cover the inner nodes (1): 22/16 = 1.375 sectors, 704 bytes.
	formatSixteenths = 22

	// reserveShift keeps 1/64 of the store out of the estimate: a commit
	// writes its new nodes before it frees the old ones, and free sectors
	// scattered among record slots cannot hold a node (FORMAT.md, "Space
	// reclamation"), so a store is full somewhat before its last sector.
	reserveShift = 6
)

// estimateCapacity estimates how many records a store of total sectors,
// free of them and holding records, holds when full: those records and as
// many more as its free space takes at what a record costs now (the space
// in use over the records, which counts the nodes at their real fill), or
// at the format's figure while there are too few records to tell. It is an
// estimate for placing users, never a promise: ErrFull is what says full.
func estimateCapacity(records, total, free uint64) uint64 {
	reserve, used := total>>reserveShift, total-min(free, total)
	if free <= reserve {
		return records
	}
	free -= reserve
	if records >= calibrationRecords && used > 0 {
		// No overflow: a store has at most 2^26 groups of 8 sectors and
		// every record takes a sector, so both factors are below 2^29.
		return records + free*records/used
	}
	return records + free*16/formatSixteenths
}
