package logcheck_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// deadSource serves nothing.
type deadSource struct{}

func (deadSource) Checkpoint(context.Context) ([]byte, error) {
	return nil, errors.New("connection refused")
}
func (deadSource) Entries(context.Context, uint64, uint64, uint64) ([][]byte, error) {
	return nil, errors.New("connection refused")
}

func revocation(h []byte) *releaselog.Entry {
	return &releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindRelease, Hash: h, Reason: "bug"}}
}

// Two hosts: one serves the log with a revocation, the other keeps serving
// the checkpoint from before it. Whatever their order, the view takes the
// newer tree and its revocation; the older copy is only stale.
func TestSyncTakesTheNewestTreeFromAnySource(t *testing.T) {
	ctx := context.Background()
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	p := l.Policy(2)
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	l.Append(releaselogtest.Release(2, "qemu", hash("b")))
	old := l.Checkpoint(2)
	l.Append(revocation(hash("a")))
	for _, flip := range []bool{false, true} {
		stale := logcheck.Named{Name: "stale host", Source: &releaselogtest.Source{Log: l, Cosigners: 2, Frozen: old}}
		fresh := logcheck.Named{Name: "fresh host", Source: &releaselogtest.Source{Log: l, Cosigners: 2}}
		srcs := []logcheck.Named{stale, fresh}
		if flip {
			srcs = []logcheck.Named{fresh, stale}
		}
		var v releaselog.View
		s := logcheck.Sync(ctx, srcs, p, &v, nil, time.Now())
		if v.Size != 3 || len(s.Entries) != 3 || s.Entries[2].Entry.Revocation == nil || s.Newest == nil || s.Newest.Size != 3 || s.Stale != nil {
			t.Fatalf("flip %v: view %d, entries %d, newest %v, stale %v", flip, v.Size, len(s.Entries), s.Newest, s.Stale)
		}
		for _, r := range s.Reads {
			if (r.Name == "stale host") != errors.Is(r.Err, logcheck.ErrStale) || r.Name == "fresh host" && r.Err != nil {
				t.Errorf("flip %v: %s: %v", flip, r.Name, r.Err)
			}
		}
	}
}

// A source that serves a larger witnessed tree but entries that do not
// hash to it is refused for itself; the view still takes what an honest
// source serves. A fork (another root for the view's size) is refused.
func TestSyncRefusesALyingSourceAndUsesTheOthers(t *testing.T) {
	ctx := context.Background()
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	p := l.Policy(2)
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	honest := &releaselogtest.Source{Log: l, Cosigners: 2, Frozen: l.Checkpoint(2)}
	l.Append(revocation(hash("a")))
	liar := &releaselogtest.Source{Log: l, Cosigners: 2, Tamper: func(from uint64, e [][]byte) [][]byte {
		e[len(e)-1], _ = releaselogtest.Release(9, "qemu", hash("harmless")).Marshal()
		return e
	}}
	var v releaselog.View
	s := logcheck.Sync(ctx, []logcheck.Named{{"liar", liar}, {"honest", honest}, {"down", deadSource{}}}, p, &v, nil, time.Now())
	if !errors.Is(s.Reads[0].Err, releaselog.ErrInconsistent) || s.Reads[1].Err != nil || s.Reads[2].Err == nil || v.Size != 1 {
		t.Fatalf("reads %+v, view %d", s.Reads, v.Size)
	}
	// A fork of the view's size.
	fork := releaselogtest.New(t, l.Origin, 0)
	fork.LogSigner, fork.LogKey, fork.Witnesses, fork.WitnessKeys = l.LogSigner, l.LogKey, l.Witnesses, l.WitnessKeys
	fork.Append(releaselogtest.Release(7, "qemu", hash("other")))
	forked := &releaselogtest.Source{Log: fork, Cosigners: 2}
	s = logcheck.Sync(ctx, []logcheck.Named{{"fork", forked}}, p, &v, nil, time.Now())
	if !errors.Is(s.Reads[0].Err, releaselog.ErrInconsistent) || v.Size != 1 {
		t.Fatalf("a fork: %v, view %d", s.Reads[0].Err, v.Size)
	}
}

// With a max-age, the view is fresh only if some checkpoint the verifier
// holds — served now by any source, or saved from before — was cosigned by
// the quorum within it.
func TestSyncFreshness(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	week, day := 168*time.Hour, 24*time.Hour
	l := releaselogtest.New(t, "releases.coffer.test", 3)
	p := l.Policy(2)
	p.MaxAge = week
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	l.Append(releaselogtest.Release(2, "qemu", hash("b")))
	oldAt := now.Add(-10 * day)
	old := l.CheckpointAtTimes(2, oldAt, oldAt)
	host := func(cp []byte) logcheck.Named {
		return logcheck.Named{Name: "host", Source: &releaselogtest.Source{Log: l, Cosigners: 2, Frozen: cp}}
	}

	// The host serves an old, validly witnessed checkpoint: stale, naming
	// when it was cosigned. The view still learns its entries.
	var v releaselog.View
	s := logcheck.Sync(ctx, []logcheck.Named{host(old)}, p, &v, nil, now)
	var se *releaselog.StaleError
	if !errors.As(s.Stale, &se) || !se.WitnessedAt.Equal(oldAt) || v.Size != 2 || s.Reads[0].Err != nil {
		t.Fatalf("an old checkpoint: %v (view %d)", s.Stale, v.Size)
	}
	saved := s.Newest.Raw
	// One fresh cosignature, quorum 2: stale.
	s = logcheck.Sync(ctx, []logcheck.Named{host(l.CheckpointAtTimes(2, now, oldAt))}, p, &v, saved, now)
	if !errors.Is(s.Stale, releaselog.ErrStaleCheckpoint) {
		t.Fatalf("one fresh cosignature of two: %v", s.Stale)
	}
	// A future-dated cosignature does not count.
	s = logcheck.Sync(ctx, []logcheck.Named{host(l.CheckpointAtTimes(2, now, now.Add(2*time.Hour)))}, p, &v, saved, now)
	if !errors.Is(s.Stale, releaselog.ErrStaleCheckpoint) {
		t.Fatalf("a fresh and a future-dated cosignature: %v", s.Stale)
	}
	// A second source with the same tree freshly cosigned: fresh, and it
	// is the checkpoint to keep.
	freshCP := l.CheckpointAtTimes(2, now.Add(-time.Hour), now.Add(-2*time.Hour))
	s = logcheck.Sync(ctx, []logcheck.Named{host(old), {Name: "mirror", Source: &releaselogtest.Source{Log: l, Frozen: freshCP}}}, p, &v, saved, now)
	if s.Stale != nil || s.Newest == nil || string(s.Newest.Raw) != string(freshCP) {
		t.Fatalf("a fresh mirror: %v", s.Stale)
	}
	saved = s.Newest.Raw
	// Later, every source is down or old: the saved checkpoint is fresh
	// while it is within max-age, and then no longer.
	for _, tc := range []struct {
		at    time.Time
		fresh bool
	}{{now.Add(day), true}, {now.Add(week + 3*time.Hour), false}} {
		s = logcheck.Sync(ctx, []logcheck.Named{{Name: "down", Source: deadSource{}}, host(old)}, p, &v, saved, tc.at)
		if (s.Stale == nil) != tc.fresh || string(s.Newest.Raw) != string(saved) {
			t.Fatalf("at %v: stale %v", tc.at, s.Stale)
		}
	}
	// A fresh checkpoint of an older tree counts: its witnesses had seen
	// nothing larger when they cosigned it.
	l.Append(releaselogtest.Release(3, "qemu", hash("c")))
	var v3 releaselog.View
	s = logcheck.Sync(ctx, []logcheck.Named{host(l.CheckpointAtTimes(3, oldAt, oldAt)), host(l.CheckpointAtTimes(2, now, now))}, p, &v3, nil, now)
	if s.Stale != nil || v3.Size != 3 || s.Newest.Size != 3 {
		t.Fatalf("a fresh older tree: %v (view %d)", s.Stale, v3.Size)
	}
	// No max-age: never stale.
	p.MaxAge = 0
	if s = logcheck.Sync(ctx, []logcheck.Named{host(old)}, p, &v, nil, now); s.Stale != nil {
		t.Fatalf("no max-age: %v", s.Stale)
	}
}
