// Package logcheck follows Coffer's release log for a client or a monitor:
// it fetches the newest checkpoint from an untrusted source (cofferd, or
// the log's own address), verifies it against the pinned policy, fetches
// every entry added since the verifier's View, and moves the View only
// when those entries hash to the checkpoint's root. The verifier thereby
// sees every entry the log ever held — each release, each vault identity,
// each revocation — and never accepts a checkpoint inconsistent with one
// it accepted before.
package logcheck

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Source serves a log. Nothing it returns is believed before Update
// verifies it.
type Source interface {
	// Checkpoint returns the newest signed checkpoint.
	Checkpoint(ctx context.Context) ([]byte, error)
	// Entries returns the leaf data of entries [from, to) of the tree
	// of size treeSize (to <= treeSize).
	Entries(ctx context.Context, from, to, treeSize uint64) ([][]byte, error)
}

// Logged is one entry, where it is in the log, and its leaf data.
type Logged struct {
	Index uint64
	Entry *releaselog.Entry
	Data  []byte
}

// ErrStale: the source serves a checkpoint, signed and witnessed, of a
// smaller tree than the verifier's view: an older copy of the log (a
// mirror that lags, or a host withholding newer entries). It is not
// evidence of a fork — the witnesses vouch that it is a prefix of the
// tree they cosigned later — and the view keeps what it has already
// seen, but nothing new can be learnt from this source. Update returns it
// with the verified checkpoint.
var ErrStale = errors.New("logcheck: the source serves an older checkpoint than this verifier has seen")

// MaxEntriesPerUpdate bounds what one Update fetches and keeps in memory.
const MaxEntriesPerUpdate = 1 << 20

// Update fetches and verifies the newest checkpoint and the entries added
// since v, moves v to it, and returns the checkpoint and the new entries.
// It does not look at the checkpoint's age: Sync does, for a policy with
// a max-age, over every source a verifier has.
// On any error v is unchanged; with ErrStale the checkpoint is returned. An entry that does not parse is still part
// of the tree (its hash is checked) but is reported as an error: a log
// that holds one is not one this client understands.
func Update(ctx context.Context, src Source, p *releaselog.Policy, v *releaselog.View) (*releaselog.Checkpoint, []Logged, error) {
	raw, err := src.Checkpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("logcheck: fetching the release log's checkpoint: %w", err)
	}
	cp, err := p.VerifyCheckpoint(raw)
	if err != nil {
		return nil, nil, err
	}
	logged, err := advance(ctx, src, cp, v)
	if errors.Is(err, ErrStale) {
		return cp, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	return cp, logged, nil
}

// advance moves v to cp, verified, with the entries src serves: Update
// after the checkpoint. On any error v is unchanged.
func advance(ctx context.Context, src Source, cp *releaselog.Checkpoint, v *releaselog.View) ([]Logged, error) {
	if cp.Size < v.Size {
		return nil, fmt.Errorf("%w: a witnessed tree of %d entries after one of %d", ErrStale, cp.Size, v.Size)
	}
	if cp.Size-v.Size > MaxEntriesPerUpdate {
		return nil, fmt.Errorf("logcheck: the log grew by %d entries since this verifier's last view; refusing to fetch more than %d at once", cp.Size-v.Size, MaxEntriesPerUpdate)
	}
	var data [][]byte
	if cp.Size > v.Size {
		var err error
		if data, err = src.Entries(ctx, v.Size, cp.Size, cp.Size); err != nil {
			return nil, fmt.Errorf("logcheck: fetching entries %d to %d: %w", v.Size, cp.Size, err)
		}
	}
	next := *v
	if err := next.Extend(cp, data); err != nil {
		return nil, err
	}
	logged := make([]Logged, len(data))
	for i, d := range data {
		e, err := releaselog.ParseEntry(d)
		if err != nil {
			return nil, fmt.Errorf("logcheck: entry %d: %w", v.Size+uint64(i), err)
		}
		logged[i] = Logged{Index: v.Size + uint64(i), Entry: e, Data: d}
	}
	*v = next
	return logged, nil
}
