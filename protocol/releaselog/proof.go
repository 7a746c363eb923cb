package releaselog

import (
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ErrNotIncluded: the entry is not in the tree the checkpoint commits to.
var ErrNotIncluded = errors.New("releaselog: the entry is not included in the checkpoint's tree")

// Proof is a proof bundle: an entry, where it is in the log, and the
// inclusion proof to a witnessed checkpoint. The bootloader verifies the
// OS image's proof before booting it; anything can carry one, since it
// proves itself.
type Proof struct {
	Checkpoint []byte   `cbor:"1,keyasint"` // signed note, with cosignatures
	Index      uint64   `cbor:"2,keyasint"`
	Entry      []byte   `cbor:"3,keyasint"` // the leaf data
	Inclusion  [][]byte `cbor:"4,keyasint"`
}

// maxProofSize bounds an encoded proof bundle.
const maxProofSize = maxCheckpointSize + MaxEntrySize + 64*34 + 64

// Marshal encodes the proof bundle.
func (pr *Proof) Marshal() ([]byte, error) {
	return encMode.Marshal(pr)
}

// ParseProof decodes a proof bundle strictly.
func ParseProof(b []byte) (*Proof, error) {
	var pr Proof
	if err := decodeCanonical(b, maxProofSize, &pr); err != nil {
		return nil, fmt.Errorf("releaselog: malformed proof bundle: %v", err)
	}
	return &pr, nil
}

// VerifyProof checks a proof bundle against the policy: a witnessed
// checkpoint (VerifyCheckpoint), then the entry's inclusion in its tree at
// the index claimed, and returns the decoded entry.
func (p *Policy) VerifyProof(pr *Proof) (*Entry, *Checkpoint, error) {
	cp, err := p.VerifyCheckpoint(pr.Checkpoint)
	if err != nil {
		return nil, nil, err
	}
	if pr.Index >= cp.Size {
		return nil, nil, fmt.Errorf("%w: index %d in a tree of %d", ErrNotIncluded, pr.Index, cp.Size)
	}
	if len(pr.Inclusion) > 64 {
		return nil, nil, fmt.Errorf("%w: an inclusion proof of %d hashes", ErrNotIncluded, len(pr.Inclusion))
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, pr.Index, cp.Size, LeafHash(pr.Entry), pr.Inclusion, cp.Hash); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNotIncluded, err)
	}
	e, err := ParseEntry(pr.Entry)
	if err != nil {
		return nil, nil, err
	}
	return e, cp, nil
}
