package logcheck_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func TestUpdateSeesEveryEntryOnceAndRefusesTampering(t *testing.T) {
	ctx := context.Background()
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	src := &releaselogtest.Source{Log: l, Cosigners: 2}
	p := l.Policy(2)
	var v releaselog.View
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	l.Append(releaselogtest.Release(2, "qemu", hash("b")))
	cp, got, err := logcheck.Update(ctx, src, p, &v)
	if err != nil || cp.Size != 2 || len(got) != 2 || got[1].Index != 1 || got[1].Entry.Release.Version != 2 {
		t.Fatalf("first update: %v %+v", err, got)
	}
	l.Append(releaselogtest.Release(3, "qemu", hash("c")))
	if _, got, err = logcheck.Update(ctx, src, p, &v); err != nil || len(got) != 1 || got[0].Index != 2 {
		t.Fatalf("second update: %v %+v", err, got)
	}
	// The source hides an entry (serves another in its place): refused,
	// and the view stays where it was.
	l.Append(&releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindRelease, Hash: hash("a")}})
	src.Tamper = func(from uint64, e [][]byte) [][]byte {
		e[0], _ = releaselogtest.Release(4, "qemu", hash("d")).Marshal()
		return e
	}
	if _, _, err := logcheck.Update(ctx, src, p, &v); !errors.Is(err, releaselog.ErrInconsistent) || v.Size != 3 {
		t.Fatalf("a hidden revocation: %v (view at %d)", err, v.Size)
	}
	src.Tamper = nil
	// Too few cosignatures: refused before any entry is fetched.
	src.Cosigners = 1
	if _, _, err := logcheck.Update(ctx, src, p, &v); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Fatalf("an unwitnessed checkpoint: %v", err)
	}
	src.Cosigners = 2
	if _, got, err = logcheck.Update(ctx, src, p, &v); err != nil || len(got) != 1 || got[0].Entry.Kind != releaselog.KindRevocation {
		t.Fatalf("the revocation: %v %+v", err, got)
	}
}

// olderSource serves the log's checkpoint at an older size.
type olderSource struct {
	*releaselogtest.Source
	size uint64
}

func (s olderSource) Checkpoint(context.Context) ([]byte, error) {
	return s.Log.CheckpointAt(s.size, s.Cosigners), nil
}

func TestUpdateReportsAnOlderCopyAsStaleAndKeepsTheView(t *testing.T) {
	ctx := context.Background()
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	p := l.Policy(2)
	for i := range 3 {
		l.Append(releaselogtest.Release(uint64(i+1), "qemu", hash(string(rune('a'+i)))))
	}
	var v releaselog.View
	if _, _, err := logcheck.Update(ctx, &releaselogtest.Source{Log: l, Cosigners: 2}, p, &v); err != nil {
		t.Fatal(err)
	}
	cp, got, err := logcheck.Update(ctx, olderSource{&releaselogtest.Source{Log: l, Cosigners: 2}, 2}, p, &v)
	if !errors.Is(err, logcheck.ErrStale) || errors.Is(err, releaselog.ErrInconsistent) || cp == nil || cp.Size != 2 || got != nil || v.Size != 3 {
		t.Fatalf("older copy: %v %v %v (view %d)", err, cp, got, v.Size)
	}
	// Unwitnessed, it is not even stale: refused as such.
	if _, _, err := logcheck.Update(ctx, olderSource{&releaselogtest.Source{Log: l, Cosigners: 1}, 2}, p, &v); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Fatalf("unwitnessed older copy: %v", err)
	}
}
