package releasewriter

import (
	"context"
	"fmt"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// readLeaves reads the leaf data of entries [from, to) of a tree of size to.
func readLeaves(ctx context.Context, fetch client.EntryBundleFetcherFunc, from, to uint64) ([][]byte, error) {
	var out [][]byte
	for i := from; i < to; {
		bundle, err := client.GetEntryBundle(ctx, fetch, i/layout.EntryBundleWidth, to)
		if err != nil {
			return nil, fmt.Errorf("releasewriter: reading entries: %w", err)
		}
		first := i % layout.EntryBundleWidth
		if uint64(len(bundle.Entries)) <= first {
			return nil, fmt.Errorf("releasewriter: entry bundle %d holds %d entries, want more than %d", i/layout.EntryBundleWidth, len(bundle.Entries), first)
		}
		for _, e := range bundle.Entries[first:] {
			if i == to {
				break
			}
			out = append(out, e)
			i++
		}
	}
	return out, nil
}

// buildProof makes the proof bundle of the entry at index (leaf data
// data) in the tree cp commits to, from the log's tiles, and verifies it.
func buildProof(ctx context.Context, p *releaselog.Policy, cp *releaselog.Checkpoint, index uint64, data []byte, tiles client.TileFetcherFunc) (*releaselog.Proof, error) {
	if index >= cp.Size || data == nil {
		return nil, fmt.Errorf("releasewriter: entry %d is not covered by the published checkpoint (size %d)", index, cp.Size)
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, tiles)
	if err != nil {
		return nil, err
	}
	incl, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("releasewriter: inclusion proof of entry %d: %w", index, err)
	}
	pr := &releaselog.Proof{Checkpoint: cp.Raw, Index: index, Entry: data, Inclusion: incl}
	if _, _, err := p.VerifyProof(pr); err != nil {
		return nil, fmt.Errorf("releasewriter: the proof built for entry %d does not verify: %w", index, err)
	}
	return pr, nil
}

// Snapshot is a log folder read without its key: the published checkpoint,
// verified against a policy, and the entries it covers, checked to hash to
// its root.
type Snapshot struct {
	Checkpoint *releaselog.Checkpoint
	Entries    [][]byte
	policy     *releaselog.Policy
	fetch      client.FileFetcher
}

// Read reads the log in dir as a verifier would: nothing is returned that
// the policy and the checkpoint's root do not vouch for.
func Read(ctx context.Context, dir string, p *releaselog.Policy) (*Snapshot, error) {
	f := client.FileFetcher{Root: dir}
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("releasewriter: reading the checkpoint of %s: %w", dir, err)
	}
	cp, err := p.VerifyCheckpoint(raw)
	if err != nil {
		return nil, err
	}
	entries, err := readLeaves(ctx, f.ReadEntryBundle, 0, cp.Size)
	if err != nil {
		return nil, err
	}
	var v releaselog.View
	if err := v.Extend(cp, entries); err != nil {
		return nil, fmt.Errorf("releasewriter: the entries in %s do not match its checkpoint: %w", dir, err)
	}
	return &Snapshot{Checkpoint: cp, Entries: entries, policy: p, fetch: f}, nil
}

// Proof builds and verifies the proof bundle of entry index.
func (s *Snapshot) Proof(ctx context.Context, index uint64) (*releaselog.Proof, error) {
	var data []byte
	if index < uint64(len(s.Entries)) {
		data = s.Entries[index]
	}
	return buildProof(ctx, s.policy, s.Checkpoint, index, data, s.fetch.ReadTile)
}
