package releaselog_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func TestEntryRoundTripAndStrictness(t *testing.T) {
	e := releaselogtest.Release(3, "usbarmory", hash("os"))
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := releaselog.ParseEntry(b)
	if err != nil || got.Release.Version != 3 || !bytes.Equal(got.Release.Firmware, hash("os")) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	bad := []*releaselog.Entry{
		{Kind: releaselog.KindIdentity, Release: e.Release}, // kind does not match its part
		{Kind: releaselog.KindRelease},                      // no part
		{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindRevocation, Hash: hash("x")}},
		{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindRelease, Hash: []byte{1}}},
		releaselogtest.Release(0, "usbarmory", hash("os")),
		releaselogtest.Release(1, "pc", hash("os")),
		releaselogtest.Release(1, "qemu", []byte{1, 2}),
	}
	for i, e := range bad {
		if _, err := e.Marshal(); !errors.Is(err, releaselog.ErrMalformedEntry) {
			t.Errorf("bad entry %d encoded: %v", i, err)
		}
	}
	// One entry, one encoding: a non-canonical re-encoding (a map key
	// order or integer width the canonical form does not use) is refused,
	// so that no entry has two leaf hashes.
	noncanon := append([]byte(nil), b...)
	if noncanon[0] != 0xa2 || noncanon[1] != 0x01 {
		t.Fatalf("unexpected encoding % x", b[:4])
	}
	noncanon = append([]byte{0xa2, 0x18, 0x01}, b[2:]...) // key 1 as a one-byte-argument integer
	if _, err := releaselog.ParseEntry(noncanon); err == nil {
		t.Fatal("a non-canonical entry parsed")
	}
}

func TestCheckpointNeedsTheReleaseKeyAndAQuorumOfWitnesses(t *testing.T) {
	l := releaselogtest.New(t, "releases.coffer.test", 3)
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	p := l.Policy(2)
	if _, err := p.VerifyCheckpoint(l.Checkpoint(2)); err != nil {
		t.Fatalf("a checkpoint with 2 of 3 cosignatures: %v", err)
	}
	if _, err := p.VerifyCheckpoint(l.Checkpoint(3)); err != nil {
		t.Fatalf("a checkpoint with 3 of 3 cosignatures: %v", err)
	}
	for _, n := range []int{0, 1} {
		if _, err := p.VerifyCheckpoint(l.Checkpoint(n)); !errors.Is(err, releaselog.ErrNotWitnessed) {
			t.Errorf("%d cosignatures for a quorum of 2: %v", n, err)
		}
	}
	// The relay repeats one witness's cosignature line: still one witness.
	one := l.Checkpoint(1)
	lines := strings.SplitAfter(string(one), "\n")
	dup := strings.Join(lines, "") + lines[len(lines)-2]
	if _, err := p.VerifyCheckpoint([]byte(dup)); err == nil {
		t.Fatal("one witness's cosignature counted twice")
	}
	// A witness the policy does not name does not count.
	other := releaselogtest.New(t, "releases.coffer.test", 0)
	other.LogSigner, other.LogKey = l.LogSigner, l.LogKey
	other.AddWitness("stranger.test")
	other.AddWitness("witness-1.test") // same name, another key
	other.Append(releaselogtest.Release(1, "qemu", hash("a")))
	if _, err := p.VerifyCheckpoint(other.Checkpoint(2)); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Fatalf("cosignatures by keys outside the policy: %v", err)
	}
	// Another release key, or another origin: not this log.
	forged := releaselogtest.New(t, "releases.coffer.test", 0)
	forged.Witnesses, forged.WitnessKeys = l.Witnesses, l.WitnessKeys
	forged.Append(releaselogtest.Release(1, "qemu", hash("a")))
	if _, err := p.VerifyCheckpoint(forged.Checkpoint(3)); !errors.Is(err, releaselog.ErrBadCheckpoint) {
		t.Fatalf("a checkpoint signed by another release key: %v", err)
	}
}

func TestPolicyText(t *testing.T) {
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	p := l.Policy(2)
	back, err := releaselog.ParsePolicy([]byte("# pinned\n" + p.String()))
	if err != nil || back.String() != p.String() {
		t.Fatalf("round trip: %v\n%s", err, back)
	}
	bad := []string{
		p.String() + "witness " + l.WitnessKeys[0] + "\n",                         // a witness listed twice
		strings.Replace(p.String(), "quorum 2", "quorum 3", 1),                    // cannot be met
		strings.Replace(p.String(), "quorum 2", "quorum 0", 1),                    // no witness needed
		strings.Replace(p.String(), "origin releases.coffer.test", "origin x", 1), // key not named after the origin
		p.String() + "extra line\n",
	}
	for i, s := range bad {
		if _, err := releaselog.ParsePolicy([]byte(s)); !errors.Is(err, releaselog.ErrBadPolicy) {
			t.Errorf("bad policy %d parsed: %v", i, err)
		}
	}
}

func TestProofBundle(t *testing.T) {
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	for i := range 5 {
		l.Append(releaselogtest.Release(uint64(i+1), "qemu", hash(string(rune('a'+i)))))
	}
	p := l.Policy(2)
	pr := l.Proof(3, 2)
	b, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := releaselog.ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	e, cp, err := p.VerifyProof(back)
	if err != nil || e.Release.Version != 4 || cp.Size != 5 {
		t.Fatalf("verify: %v %+v", err, e)
	}
	// The entry claimed at another index, another entry, a proof cut short.
	wrongIndex := *pr
	wrongIndex.Index = 2
	otherEntry := *pr
	otherEntry.Entry, _ = releaselogtest.Release(9, "qemu", hash("d")).Marshal()
	short := *pr
	short.Inclusion = short.Inclusion[1:]
	beyond := *pr
	beyond.Index = 5
	for name, q := range map[string]*releaselog.Proof{"wrong index": &wrongIndex, "other entry": &otherEntry, "short": &short, "beyond": &beyond} {
		if _, _, err := p.VerifyProof(q); !errors.Is(err, releaselog.ErrNotIncluded) {
			t.Errorf("%s: %v", name, err)
		}
	}
	under := *pr
	under.Checkpoint = l.Checkpoint(1)
	if _, _, err := p.VerifyProof(&under); !errors.Is(err, releaselog.ErrNotWitnessed) {
		t.Errorf("a proof to an unwitnessed checkpoint: %v", err)
	}
}

func TestViewRefusesAForkAndAShrink(t *testing.T) {
	l := releaselogtest.New(t, "releases.coffer.test", 1)
	p := l.Policy(1)
	var v releaselog.View
	step := func(cpRaw []byte, entries [][]byte) error {
		cp, err := p.VerifyCheckpoint(cpRaw)
		if err != nil {
			t.Fatal(err)
		}
		return v.Extend(cp, entries)
	}
	for i := range 3 {
		l.Append(releaselogtest.Release(uint64(i+1), "qemu", hash(string(rune('a'+i)))))
	}
	if err := step(l.Checkpoint(1), l.Entries(0, 3)); err != nil || v.Size != 3 {
		t.Fatalf("first extend: %v", err)
	}
	for i := range 4 {
		l.Append(releaselogtest.Release(uint64(i+4), "qemu", hash(string(rune('k'+i)))))
	}
	if err := step(l.Checkpoint(1), l.Entries(3, 7)); err != nil || v.Size != 7 {
		t.Fatalf("second extend: %v", err)
	}
	if err := step(l.Checkpoint(1), nil); err != nil {
		t.Fatalf("the same checkpoint again: %v", err)
	}
	saved := v
	// A shrink: the checkpoint of 3 entries after one of 7.
	if err := step(l.CheckpointAt(3, 1), nil); !errors.Is(err, releaselog.ErrInconsistent) {
		t.Fatalf("shrink: %v", err)
	}
	// A fork: the same log key signs another tree of 7 (one entry swapped)
	// for this client; and one of 8 that extends the fork.
	fork := releaselogtest.New(t, "releases.coffer.test", 0)
	fork.LogSigner, fork.LogKey, fork.Witnesses, fork.WitnessKeys = l.LogSigner, l.LogKey, l.Witnesses, l.WitnessKeys
	for i, d := range l.Entries(0, 7) {
		if i == 5 {
			d, _ = releaselogtest.Release(99, "qemu", hash("evil")).Marshal()
		}
		fork.AppendData(d)
	}
	if err := step(fork.Checkpoint(1), nil); !errors.Is(err, releaselog.ErrInconsistent) {
		t.Fatalf("fork at the same size: %v", err)
	}
	fork.Append(releaselogtest.Release(100, "qemu", hash("more")))
	if err := step(fork.Checkpoint(1), fork.Entries(7, 8)); !errors.Is(err, releaselog.ErrInconsistent) {
		t.Fatalf("fork extended: %v", err)
	}
	if v.Size != saved.Size || !bytes.Equal(v.Root, saved.Root) {
		t.Fatal("a refused checkpoint changed the view")
	}
}

func TestRevocationEntry(t *testing.T) {
	e := &releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindIdentity, Hash: hash("bundle"), Reason: "key compromise"}}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := releaselog.ParseEntry(b)
	if err != nil || got.Revocation.Target != releaselog.KindIdentity {
		t.Fatal(err)
	}
}
