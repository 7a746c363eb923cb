package releasewriter

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
)

// mustAdd adds e and checks what Add promises: a checkpoint that verifies
// against the policy and covers the entry, and a proof bundle that
// verifies and names the entry.
func mustAdd(t *testing.T, f *fixture, l *Log, want uint64, data []byte, add func() (uint64, []byte, error)) {
	t.Helper()
	idx, raw, err := add()
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if idx != want {
		t.Fatalf("index %d, want %d", idx, want)
	}
	cp, err := f.policy.VerifyCheckpoint(raw)
	if err != nil {
		t.Fatalf("the checkpoint Add returned does not verify: %v", err)
	}
	if cp.Size <= idx || len(cp.Witnessed) < f.policy.Quorum {
		t.Fatalf("checkpoint of size %d cosigned by %q does not cover entry %d", cp.Size, cp.Witnessed, idx)
	}
	pr, err := l.Proof(context.Background(), idx)
	if err != nil {
		t.Fatal(err)
	}
	e, pcp, err := f.policy.VerifyProof(pr)
	if err != nil {
		t.Fatalf("the proof bundle does not verify: %v", err)
	}
	got, _ := e.Marshal()
	if !bytes.Equal(got, data) || pcp.Size <= idx {
		t.Fatalf("the proof names another entry, or a tree of %d", pcp.Size)
	}
}

func TestAddPublishesOnlyWitnessedCheckpoints(t *testing.T) {
	f := newFixture(t, 2, 2)
	l := f.open(t, t.TempDir())
	defer l.Close()
	ctx := context.Background()
	// Even the empty log's first checkpoint is witnessed.
	if cp, err := l.Checkpoint(ctx); err != nil || cp.Size != 0 {
		t.Fatalf("the new log's checkpoint: %v, %v", cp, err)
	}
	r := release(1)
	rdata, _ := r.Marshal()
	mustAdd(t, f, l, 0, rdata, func() (uint64, []byte, error) { return l.Add(ctx, r) })
	id := identity(t, r.Release.Firmware)
	iddata, _ := id.Marshal()
	mustAdd(t, f, l, 1, iddata, func() (uint64, []byte, error) { return l.Add(ctx, id) })
	// The same entry again is not logged twice.
	mustAdd(t, f, l, 0, rdata, func() (uint64, []byte, error) { return l.Add(ctx, r) })
	if es, _ := l.Entries(ctx); len(es) != 2 {
		t.Fatalf("%d entries after adding one twice, want 2", len(es))
	}
}

func TestWitnessDownFailsNamingItAndPublishesNothingUnwitnessed(t *testing.T) {
	f := newFixture(t, 2, 2)
	dir := t.TempDir()
	l := f.open(t, dir)
	ctx := context.Background()
	first := release(1)
	fdata, _ := first.Marshal()
	mustAdd(t, f, l, 0, fdata, func() (uint64, []byte, error) { return l.Add(ctx, first) })

	f.witnesses[1].down.Store(true)
	r := release(2)
	idx, cp, err := l.Add(ctx, r)
	if !errors.Is(err, ErrUnwitnessed) || cp != nil {
		t.Fatalf("Add with a witness down: %v (checkpoint %q)", err, cp)
	}
	if !strings.Contains(err.Error(), "witness-2.test") || strings.Contains(err.Error(), "witness-1.test") {
		t.Fatalf("the error does not name (only) the silent witness: %v", err)
	}
	// What is published is still the last witnessed checkpoint, which does
	// not cover the new entry; no proof of it is handed out.
	raw, rerr := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	pub, verr := f.policy.VerifyCheckpoint(raw)
	if verr != nil {
		t.Fatalf("the published checkpoint is not witnessed: %v", verr)
	}
	if pub.Size > idx {
		t.Fatalf("a checkpoint of size %d covering the unwitnessed entry %d was published", pub.Size, idx)
	}
	if _, err := l.Proof(ctx, idx); err == nil {
		t.Fatal("a proof of an entry no witnessed checkpoint covers")
	}
	l.Close()

	// The witness comes back: the retried Add does not log the entry
	// twice, and the checkpoint now covers it.
	f.witnesses[1].down.Store(false)
	l = f.open(t, dir)
	defer l.Close()
	rdata, _ := r.Marshal()
	mustAdd(t, f, l, idx, rdata, func() (uint64, []byte, error) { return l.Add(ctx, r) })
	if es, _ := l.Entries(ctx); len(es) != 2 {
		t.Fatalf("%d entries, want 2", len(es))
	}
}

func TestReopenedLogContinuesConsistently(t *testing.T) {
	f := newFixture(t, 2, 2)
	dir := t.TempDir()
	ctx := context.Background()
	var all [][]byte
	for round := range 3 {
		l := f.open(t, dir)
		for i := range 2 {
			r := release(uint64(round*2 + i + 1))
			d, _ := r.Marshal()
			mustAdd(t, f, l, uint64(len(all)), d, func() (uint64, []byte, error) { return l.Add(ctx, r) })
			all = append(all, d)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A reader with only the policy sees every entry, checked against the root.
	s, err := Read(ctx, dir, f.policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Entries) != len(all) || s.Checkpoint.Size != uint64(len(all)) {
		t.Fatalf("read %d entries at size %d, want %d", len(s.Entries), s.Checkpoint.Size, len(all))
	}
	for i := range all {
		if !bytes.Equal(s.Entries[i], all[i]) {
			t.Fatalf("entry %d differs", i)
		}
		pr, err := s.Proof(ctx, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.policy.VerifyProof(pr); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadRefusesEntriesThatDoNotMatchTheCheckpoint(t *testing.T) {
	f := newFixture(t, 2, 1)
	dir := t.TempDir()
	l := f.open(t, dir)
	r := release(1)
	if _, _, err := l.Add(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// Someone rewrites the entry on disk.
	bundle := filepath.Join(dir, "tile", "entries", "000.p", "1")
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	os.WriteFile(bundle, b, 0o644)
	if _, err := Read(context.Background(), dir, f.policy); err == nil {
		t.Fatal("Read accepted entries that do not hash to the checkpoint")
	}
}

func TestOpenRefusesAPolicyThatDoesNotPinTheKey(t *testing.T) {
	f := newFixture(t, 2, 2)
	other := newFixture(t, 0, 0)
	cfg := f.config(t.TempDir())
	cfg.Signer = other.signer
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Fatal("opened with a release key the policy does not pin")
	}
	cfg = f.config(t.TempDir())
	delete(cfg.WitnessURLs, f.policy.Witnesses[1])
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no URL") {
		t.Fatalf("opened without a witness's URL: %v", err)
	}
}

// An operator's own tessera driver (a database's, a cloud's) plugs in
// through NewDriver and gets the client that reaches the witnesses: its
// checkpoints are witnessed like the POSIX log's.
func TestOperatorDriverIsUsedAndWitnessed(t *testing.T) {
	f := newFixture(t, 2, 2)
	where := t.TempDir()
	calls := 0
	cfg := f.config("")
	cfg.NewDriver = func(ctx context.Context, witnesses *http.Client) (tessera.Driver, error) {
		calls++
		return posix.New(ctx, posix.Config{Path: where, HTTPClient: witnesses})
	}
	ctx := context.Background()
	l, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, cp, err := l.Add(ctx, release(1)); err != nil || calls != 1 {
		t.Fatalf("add through the operator's driver: %v (driver made %d times)", err, calls)
	} else if c, err := f.policy.VerifyCheckpoint(cp); err != nil || c.Size != 1 {
		t.Fatalf("its checkpoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(where, "checkpoint")); err != nil {
		t.Fatalf("the driver's storage holds no checkpoint: %v", err)
	}
}

// A quiet log: no entry for a while. Refresh has its unchanged checkpoint
// cosigned anew (a witness cosigns the same tree again, with a new time),
// so that verifiers whose policy has a max-age still accept it; with the
// quorum down, nothing new is published and Refresh names who is silent.
func TestRefreshRecosignsAQuietLog(t *testing.T) {
	f := newFixture(t, 3, 2)
	dir := t.TempDir()
	cfg := f.config(dir)
	cfg.RepublishInterval = cfg.CheckpointInterval
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	r := release(1)
	rdata, _ := r.Marshal()
	mustAdd(t, f, l, 0, rdata, func() (uint64, []byte, error) { return l.Add(ctx, r) })
	before, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at, _ := before.WitnessedAt(f.policy.Quorum, time.Now())
	// Cosignature times are whole seconds: start Refresh in a later one,
	// so that a new cosignature is told from the old.
	for time.Now().Unix() <= at.Unix() {
		time.Sleep(50 * time.Millisecond)
	}
	after, err := l.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := after.WitnessedAt(f.policy.Quorum, time.Now())
	if after.Size != before.Size || !bytes.Equal(after.Hash, before.Hash) || !again.After(at) {
		t.Fatalf("refreshed: size %d root %x at %v; before: size %d root %x at %v", after.Size, after.Hash, again, before.Size, before.Hash, at)
	}
	if es, _ := l.Entries(ctx); len(es) != 1 {
		t.Fatalf("%d entries after a refresh, want 1", len(es))
	}

	// Two of three witnesses down: below the quorum. Refresh fails naming
	// them, and the published checkpoint is still the last witnessed one.
	f.witnesses[0].down.Store(true)
	f.witnesses[2].down.Store(true)
	for time.Now().Unix() <= again.Unix() {
		time.Sleep(50 * time.Millisecond)
	}
	_, err = l.Refresh(ctx)
	if !errors.Is(err, ErrUnwitnessed) || !strings.Contains(err.Error(), "witness-1.test") || !strings.Contains(err.Error(), "witness-3.test") {
		t.Fatalf("Refresh with the quorum down: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := f.policy.VerifyCheckpoint(raw)
	if err != nil {
		t.Fatalf("the published checkpoint is not witnessed: %v", err)
	}
	if got, _ := pub.WitnessedAt(f.policy.Quorum, time.Now()); !got.Equal(again) {
		t.Fatalf("the published checkpoint changed without its quorum: cosigned at %v, was %v", got, again)
	}
}
