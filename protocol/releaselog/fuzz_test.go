package releaselog_test

import (
	"bytes"
	"testing"

	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// The log's bytes come from cofferd, which is untrusted: every parser of
// them is fuzzed. An entry that parses must encode back to the same bytes.
func FuzzParseEntry(f *testing.F) {
	for _, e := range []*releaselog.Entry{
		releaselogtest.Release(1, "usbarmory", hash("os")),
		{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindRelease, Hash: hash("x"), Reason: "r"}},
	} {
		b, _ := e.Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := releaselog.ParseEntry(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed entry does not encode back: %v", err)
		}
	})
}

func FuzzVerifyProof(f *testing.F) {
	l := releaselogtest.New(f, "releases.coffer.test", 2)
	for i := range 3 {
		l.Append(releaselogtest.Release(uint64(i+1), "qemu", hash(string(rune('a'+i)))))
	}
	p := l.Policy(2)
	for i := range 3 {
		b, _ := l.Proof(uint64(i), 2).Marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pr, err := releaselog.ParseProof(b)
		if err != nil {
			return
		}
		if e, cp, err := p.VerifyProof(pr); err == nil && (cp.Size != 3 || e.Release == nil) {
			t.Fatalf("a proof verified for something the log never held: %+v", e)
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	l := releaselogtest.New(f, "releases.coffer.test", 2)
	f.Add([]byte(l.Policy(1).String()))
	f.Add([]byte("origin a\nlog b\nquorum 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := releaselog.ParsePolicy(b)
		if err != nil {
			return
		}
		if _, err := releaselog.ParsePolicy([]byte(p.String())); err != nil {
			t.Fatalf("a parsed policy does not parse back: %v", err)
		}
	})
}

func FuzzVerifyCheckpoint(f *testing.F) {
	l := releaselogtest.New(f, "releases.coffer.test", 2)
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	p := l.Policy(2)
	f.Add(l.Checkpoint(2))
	f.Add(l.Checkpoint(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := p.VerifyCheckpoint(b)
		if err == nil && (cp.Size != 1 || len(cp.Witnessed) < 2) {
			t.Fatalf("a forged checkpoint verified: %+v", cp)
		}
	})
}
