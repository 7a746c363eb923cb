// Package releaselogtest is an in-memory release log for tests: a release
// key, witness keys, and the checkpoints, cosignatures and proof bundles a
// real log (tessera, firmware/cmd/coffer-release) would serve, built with
// the same libraries. Only tests import it.
package releaselogtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"github.com/transparency-dev/tessera/api/layout"
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
	// Now, when set, is the witnesses' clock: every cosignature is dated
	// Now() (nil: the wall clock).
	Now         func() time.Time
	witnessKeys []ed25519.PrivateKey
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
	// PRIVATE+KEY+name+hash+base64(type || seed)
	seed, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(seed) != 1+ed25519.SeedSize {
		l.t.Fatalf("witness key %q: %v", name, err)
	}
	l.witnessKeys = append(l.witnessKeys, ed25519.NewKeyFromSeed(seed[1:]))
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
	if l.Now != nil {
		times := make([]time.Time, cosigners)
		for i := range times {
			times[i] = l.Now()
		}
		return l.CheckpointAtTimes(size, times...)
	}
	signers := []note.Signer{l.LogSigner}
	for _, w := range l.Witnesses[:cosigners] {
		signers = append(signers, w)
	}
	return l.sign(size, signers)
}

// CheckpointAtTimes is CheckpointAt cosigned by the first len(times)
// witnesses, witness i at times[i]: a checkpoint as old (or as far in the
// future) as a test needs.
func (l *Log) CheckpointAtTimes(size uint64, times ...time.Time) []byte {
	l.t.Helper()
	signers := []note.Signer{l.LogSigner}
	for i, t := range times {
		signers = append(signers, &timedCosigner{Signer: l.Witnesses[i], key: l.witnessKeys[i], at: t})
	}
	return l.sign(size, signers)
}

func (l *Log) sign(size uint64, signers []note.Signer) []byte {
	l.t.Helper()
	cp := log.Checkpoint{Origin: l.Origin, Size: size, Hash: l.tree.HashAt(size)}
	b, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, signers...)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// timedCosigner is a witness's cosignature/v1 signer with a set clock
// (C2SP tlog-cosignature: the signature is the 8-byte big-endian time and
// Ed25519 over "cosignature/v1", the time line and the note's text).
type timedCosigner struct {
	*fnote.Signer // name and key hash
	key           ed25519.PrivateKey
	at            time.Time
}

func (s *timedCosigner) Sign(msg []byte) ([]byte, error) {
	t := uint64(s.at.Unix())
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return append(binary.BigEndian.AppendUint64(nil, t), ed25519.Sign(s.key, signed)...), nil
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
	// Frozen, when set, is the checkpoint served instead of the log's
	// newest: a host that keeps serving an old one.
	Frozen []byte
}

func (s *Source) Checkpoint(context.Context) ([]byte, error) {
	if s.Frozen != nil {
		return s.Frozen, nil
	}
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

// ServeHTTP serves the source as a C2SP tlog-tiles log: its checkpoint at
// checkpoint and its entry bundles at tile/entries/N[.p/W], under any
// base path (cofferd's /v1/log/, or a mirror's root). It serves no hash
// tiles: a client following the log reads only entries.
func (s *Source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/")
	if i := strings.Index(r.URL.Path, "/v1/log/"); i >= 0 {
		rest = r.URL.Path[i+len("/v1/log/"):]
	}
	if rest == layout.CheckpointPath {
		b, _ := s.Checkpoint(r.Context())
		w.Write(b)
		return
	}
	idx, ok := strings.CutPrefix(rest, "tile/entries/")
	n, p, err := layout.ParseTileIndexPartial(idx)
	if !ok || err != nil {
		http.NotFound(w, r)
		return
	}
	from, to := n*layout.EntryBundleWidth, (n+1)*layout.EntryBundleWidth
	if p > 0 {
		to = from + uint64(p)
	}
	entries, err := s.Entries(r.Context(), from, to, to)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	var bundle []byte
	for _, e := range entries {
		bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(e)))
		bundle = append(bundle, e...)
	}
	w.Write(bundle)
}
