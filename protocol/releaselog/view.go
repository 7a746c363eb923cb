package releaselog

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ErrInconsistent: a checkpoint that contradicts the one a View accepted
// before (a smaller tree, another root for the same size, or entries that
// do not hash to the new root). Either the log forked, showing different
// trees to different verifiers, or whoever relays it lied.
var ErrInconsistent = errors.New("releaselog: the log is not consistent with the checkpoint seen before")

// View is a verifier's own copy of the log's tree: its size, root, and the
// compact range of its leaves [0, Size), from which the root of any
// larger tree follows once the new leaves are known. A client or monitor
// keeps one and extends it with every entry the log adds, so it sees every
// entry (every release, every vault identity, every revocation), and a
// checkpoint is accepted only when the entries it was shown hash to it.
type View struct {
	Size  uint64   `json:"size"`
	Root  []byte   `json:"root"`
	Range [][]byte `json:"range"`
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Extend moves the view to cp, given the leaf data of entries [v.Size,
// cp.Size) in order. On any error the view is unchanged.
func (v *View) Extend(cp *Checkpoint, entries [][]byte) error {
	switch {
	case cp.Size < v.Size:
		return fmt.Errorf("%w: a tree of %d entries after one of %d", ErrInconsistent, cp.Size, v.Size)
	case uint64(len(entries)) != cp.Size-v.Size:
		return fmt.Errorf("releaselog: %d entries given to extend %d to %d", len(entries), v.Size, cp.Size)
	case cp.Size == v.Size:
		if v.Size > 0 && !bytes.Equal(cp.Hash, v.Root) || v.Size == 0 && !bytes.Equal(cp.Hash, rfc6962.DefaultHasher.EmptyRoot()) {
			return fmt.Errorf("%w: two roots for a tree of %d entries", ErrInconsistent, cp.Size)
		}
		return nil
	}
	// The range works in place on the hashes it is given: give it a copy,
	// so that a refused extension leaves the view as it was.
	saved := make([][]byte, len(v.Range))
	for i, h := range v.Range {
		saved[i] = bytes.Clone(h)
	}
	r, err := rangeFactory.NewRange(0, v.Size, saved)
	if err != nil {
		return fmt.Errorf("releaselog: the saved view does not decode: %v", err)
	}
	for _, e := range entries {
		if err := r.Append(LeafHash(e), nil); err != nil {
			return err
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Hash) {
		return fmt.Errorf("%w: the entries from %d to %d do not hash to the checkpoint's root", ErrInconsistent, v.Size, cp.Size)
	}
	v.Size, v.Root, v.Range = cp.Size, bytes.Clone(cp.Hash), r.Hashes()
	return nil
}
