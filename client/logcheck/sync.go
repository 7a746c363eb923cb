package logcheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Named is a source and the name messages give it (its URL).
type Named struct {
	Name   string
	Source Source
}

// Read is what one source served in a Sync.
type Read struct {
	Name string
	// Checkpoint is the source's checkpoint, verified against the policy
	// (signature and quorum, not its age); nil if it did not verify or
	// could not be fetched.
	Checkpoint *releaselog.Checkpoint
	// Err is nil when the view is at Checkpoint's tree (the source moved
	// it there, or it already was); ErrStale when Checkpoint is of a
	// smaller tree; otherwise why the source was not read or not believed
	// (releaselog.ErrNotWitnessed, ErrInconsistent, a fetch error, ...).
	Err error
}

// Synced is what a Sync learnt from all its sources.
type Synced struct {
	Reads []Read // one per source, in the order given
	// Entries are the entries new to the view, in order.
	Entries []Logged
	// Newest is the checkpoint to keep for the view: of the view's tree,
	// the one whose quorum of witnesses cosigned last (the saved one if
	// no source served a newer); nil if none is known.
	Newest *releaselog.Checkpoint
	// Stale is nil when the view is fresh at the clock Sync was given (or
	// the policy has no max-age); else the *releaselog.StaleError of the
	// freshest checkpoint seen.
	Stale error
}

// Sync brings v up to date from every source at once, so that no one
// source can hold a verifier back: it fetches every source's checkpoint
// (in parallel), verifies each against the policy, and moves v to the
// largest one whose source serves entries that hash to it (trying the next
// largest when one does not). A checkpoint of another root for the view's
// size is ErrInconsistent for its source; one of a smaller tree is
// ErrStale (an older copy: no evidence of a fork, since witnesses cosign
// only a tree consistent with every one they cosigned before).
//
// Then, for a policy with a max-age, it decides whether the verifier's
// knowledge is fresh at now: some checkpoint it holds — saved (the one
// kept from before, as signed) or served now, of the view's tree or an
// older one, every one verified — was cosigned by the policy's quorum
// within max-age of now. A checkpoint of a smaller tree counts: the
// witnesses that cosigned it then had seen no larger tree, so everything
// logged before it was cosigned is in the view. Nothing in Synced is
// believed unless verified; v is only ever moved to a checkpoint whose
// entries were checked.
func Sync(ctx context.Context, srcs []Named, p *releaselog.Policy, v *releaselog.View, saved []byte, now time.Time) *Synced {
	out := &Synced{Reads: make([]Read, len(srcs))}
	raw := make([][]byte, len(srcs))
	var wg sync.WaitGroup
	for i, s := range srcs {
		out.Reads[i].Name = s.Name
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.Source.Checkpoint(ctx)
			if err != nil {
				out.Reads[i].Err = fmt.Errorf("logcheck: fetching the release log's checkpoint: %w", err)
				return
			}
			raw[i] = b
		}()
	}
	wg.Wait()
	var order []int
	for i := range srcs {
		r := &out.Reads[i]
		if r.Err != nil {
			continue
		}
		if r.Checkpoint, r.Err = p.VerifyCheckpoint(raw[i]); r.Err == nil {
			order = append(order, i)
		}
	}
	// Largest tree first: one source's entries move the view the whole
	// way; the others are then the same tree or an older one.
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(out.Reads[b].Checkpoint.Size, out.Reads[a].Checkpoint.Size)
	})
	for _, i := range order {
		r := &out.Reads[i]
		logged, err := advance(ctx, srcs[i].Source, r.Checkpoint, v)
		r.Err = err
		out.Entries = append(out.Entries, logged...)
	}

	// The checkpoints the view may rest on: served and not refused, and
	// the saved one (verified again: it is only a file).
	held := []*releaselog.Checkpoint{}
	if len(saved) > 0 {
		if cp, err := p.VerifyCheckpoint(saved); err == nil && cp.Size <= v.Size {
			held = append(held, cp)
		}
	}
	for _, r := range out.Reads {
		if r.Checkpoint != nil && (r.Err == nil || errors.Is(r.Err, ErrStale)) {
			held = append(held, r.Checkpoint)
		}
	}
	var freshest *releaselog.Checkpoint
	var freshestAt time.Time
	for _, cp := range held {
		at, _ := cp.WitnessedAt(p.Quorum, now)
		if cp.Size == v.Size && (out.Newest == nil || at.After(newestAt(out.Newest, p, now))) {
			out.Newest = cp
		}
		if freshest == nil || at.After(freshestAt) {
			freshest, freshestAt = cp, at
		}
	}
	switch {
	case p.MaxAge == 0:
	case freshest == nil:
		out.Stale = fmt.Errorf("%w: no source served a checkpoint this device could verify", releaselog.ErrStaleCheckpoint)
	default:
		out.Stale = p.CheckFresh(freshest, now)
	}
	return out
}

func newestAt(cp *releaselog.Checkpoint, p *releaselog.Policy, now time.Time) time.Time {
	at, _ := cp.WitnessedAt(p.Quorum, now)
	return at
}
