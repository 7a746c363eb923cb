// Package releaselogtest is an in-memory release log for tests: a release
// key, witness keys, and the checkpoints, cosignatures and proof bundles a
// real log (tessera, firmware/cmd/coffer-release) would serve, built with
// the same libraries. Only tests import it.
package releaselogtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Log is an in-memory log with its keys.
type Log struct {
	t         testing.TB
	Origin    string
	LogSigner note.Signer
	LogKey    string // verifier key
	Witnesses []*fnote.Signer
	// WitnessKeys are the witnesses' cosignature/v1 verifier keys.
	WitnessKeys []string
	tree        *testonly.Tree
	data        [][]byte
}

// New makes an empty log named origin with n witnesses.
func New(t testing.TB, origin string, n int) *Log {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{t: t, Origin: origin, LogSigner: signer, LogKey: vkey, tree: testonly.New(rfc6962.DefaultHasher)}
	for i := range n {
		l.AddWitness(fmt.Sprintf("witness-%d.test", i+1))
	}
	return l
}

// AddWitness adds a witness key named name.
func (l *Log) AddWitness(name string) {
	l.t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		l.t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		l.t.Fatal(err)
	}
	cosigKey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		l.t.Fatal(err)
	}
	l.Witnesses = append(l.Witnesses, s)
	l.WitnessKeys = append(l.WitnessKeys, cosigKey)
}

// Policy is the policy that pins this log and all its witnesses with the
// given quorum.
func (l *Log) Policy(quorum int) *releaselog.Policy {
	return &releaselog.Policy{Origin: l.Origin, LogKey: l.LogKey, Witnesses: append([]string(nil), l.WitnessKeys...), Quorum: quorum}
}

// Append adds an entry and returns its index.
func (l *Log) Append(e *releaselog.Entry) uint64 {
	l.t.Helper()
	data, err := e.Marshal()
	if err != nil {
		l.t.Fatal(err)
	}
	return l.AppendData(data)
}

// AppendData adds raw leaf data (which need not be a valid entry).
func (l *Log) AppendData(data []byte) uint64 {
	l.tree.AppendData(data)
	l.data = append(l.data, data)
	return uint64(len(l.data) - 1)
}

// Size is the number of entries.
func (l *Log) Size() uint64 { return uint64(len(l.data)) }

// Entries returns the leaf data of [from, to).
func (l *Log) Entries(from, to uint64) [][]byte {
	return append([][]byte(nil), l.data[from:to]...)
}

// Checkpoint signs the tree at its current size with the release key and
// cosigns it by the first cosigners witnesses.
func (l *Log) Checkpoint(cosigners int) []byte {
	return l.CheckpointAt(l.Size(), cosigners)
}

// CheckpointAt is Checkpoint for the tree's first size entries.
func (l *Log) CheckpointAt(size uint64, cosigners int) []byte {
	l.t.Helper()
	cp := log.Checkpoint{Origin: l.Origin, Size: size, Hash: l.tree.HashAt(size)}
	signers := []note.Signer{l.LogSigner}
	for _, w := range l.Witnesses[:cosigners] {
		signers = append(signers, w)
	}
	b, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, signers...)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// Proof is the proof bundle of entry index in the current tree, with a
// checkpoint cosigned by the first cosigners witnesses.
func (l *Log) Proof(index uint64, cosigners int) *releaselog.Proof {
	l.t.Helper()
	incl, err := l.tree.InclusionProof(index, l.Size())
	if err != nil {
		l.t.Fatal(err)
	}
	return &releaselog.Proof{Checkpoint: l.Checkpoint(cosigners), Index: index, Entry: l.data[index], Inclusion: incl}
}

// Release is a release entry with random hashes, for tests.
func Release(version uint64, board string, firmware []byte) *releaselog.Entry {
	applet := make([]byte, 32)
	rand.Read(applet)
	return &releaselog.Entry{Kind: releaselog.KindRelease, Release: &releaselog.Release{
		Version: version, Name: fmt.Sprintf("v%d", version), Commit: "0000000000000000000000000000000000000000",
		Toolchain: "tamago-go1.26.0", Board: board, Firmware: firmware, Applet: applet,
	}}
}

// Source serves the log as client/logcheck reads it: the checkpoint
// cosigned by the first Cosigners witnesses, and its entries.
type Source struct {
	Log       *Log
	Cosigners int
	// Tamper, when set, rewrites the served entries (an adversary).
	Tamper func(from uint64, entries [][]byte) [][]byte
}

func (s *Source) Checkpoint(context.Context) ([]byte, error) {
	return s.Log.Checkpoint(s.Cosigners), nil
}

func (s *Source) Entries(_ context.Context, from, to, _ uint64) ([][]byte, error) {
	if to > s.Log.Size() || from > to {
		return nil, fmt.Errorf("entries %d to %d of %d", from, to, s.Log.Size())
	}
	e := s.Log.Entries(from, to)
	if s.Tamper != nil {
		e = s.Tamper(from, e)
	}
	return e, nil
}
