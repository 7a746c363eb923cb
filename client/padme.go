package client

import "math/bits"

// PadmeLength is the length a backup's payload of l bytes is padded to
// (SPEC.md, "Padding"): Padmé, from Nikitin et al., "Reducing Metadata
// Leakage from Encrypted Files and Communication with PURBs" (PETS 2019).
// With E = floor(log2 l) and S = floor(log2 E) + 1, the padded length is l
// rounded up to a multiple of 2^(E−S): its binary form keeps only its top S
// bits, so it reveals O(log log l) bits of l, for an overhead below 12%.
// Lengths below 2 are their own padded length.
func PadmeLength(l int64) int64 {
	if l < 2 {
		return l
	}
	e := bits.Len64(uint64(l)) - 1 // floor(log2 l) >= 1
	s := bits.Len64(uint64(e))     // floor(log2 e) + 1
	mask := int64(1)<<(e-s) - 1
	return (l + mask) &^ mask
}
