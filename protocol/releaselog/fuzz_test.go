package releaselog_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// The log's bytes come from cofferd, which is untrusted: every parser of
// them is fuzzed. An entry that parses must encode back to the same bytes,
// and an identity entry's keys must read (what a revocation revokes).
func FuzzParseEntry(f *testing.F) {
	si, err := protocol.SignIdentity(ed25519.NewKeyFromSeed(hash("provisioning")), &protocol.Identity{Version: protocol.Version,
		SigningKey: hash("s"), AKEKey: hash("a"), HPKEKey: hash("h"), FirmwareHash: hash("os"), MaxLimit: 10, Name: "v"})
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range []*releaselog.Entry{
		releaselogtest.Release(1, "usbarmory", hash("os")),
		{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: releaselog.KindRelease, Hash: hash("x"), Reason: "r"}},
		{Kind: releaselog.KindIdentity, Identity: &si},
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
		if e.Identity != nil {
			k, err := releaselog.KeysOf(e.Identity)
			if err != nil || len(k.Signing) != 32 || len(k.AKE) != 32 || len(k.HPKE) != 32 {
				t.Fatalf("the keys of a parsed identity entry do not read: %v", err)
			}
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
	for _, line := range []string{"max-age 168h", "max-age 90m", "max-age 3600s", "max-age 07h", "max-age 1h30m", "max-age 8761h"} {
		f.Add([]byte(l.Policy(2).String() + line + "\n"))
	}
	f.Add([]byte("max-age 1m\n# first\n" + l.Policy(1).String()))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := releaselog.ParsePolicy(b)
		if err != nil {
			return
		}
		back, err := releaselog.ParsePolicy([]byte(p.String()))
		if err != nil {
			t.Fatalf("a parsed policy does not parse back: %v", err)
		}
		if back.String() != p.String() || back.MaxAge != p.MaxAge {
			t.Fatalf("a policy prints back as another:\n%s\n%s", p, back)
		}
		if p.MaxAge != 0 && (p.MaxAge < releaselog.MinMaxAge || p.MaxAge > releaselog.MaxMaxAge) {
			t.Fatalf("max-age %v out of bounds", p.MaxAge)
		}
	})
}

func FuzzVerifyCheckpoint(f *testing.F) {
	l := releaselogtest.New(f, "releases.coffer.test", 2)
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	p := l.Policy(2)
	p.MaxAge = 168 * time.Hour
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Add(l.Checkpoint(2))
	f.Add(l.Checkpoint(1))
	f.Add(l.CheckpointAtTimes(1, now, now.Add(-time.Hour)))
	f.Add(l.CheckpointAtTimes(1, now, now.Add(-30*24*time.Hour)))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := p.VerifyCheckpoint(b)
		if err == nil && (cp.Size != 1 || len(cp.Witnessed) < 2 || len(cp.Cosigned) != len(cp.Witnessed)) {
			t.Fatalf("a forged checkpoint verified: %+v", cp)
		}
		if cp, err := p.VerifyCheckpointAt(b, now); err == nil {
			// Fresh: two of its cosignatures within the week before now
			// and none of those more than MaxFutureSkew ahead.
			n := 0
			for _, ts := range cp.Cosigned {
				if now.Sub(ts) <= p.MaxAge && !ts.After(now.Add(releaselog.MaxFutureSkew)) {
					n++
				}
			}
			if n < 2 {
				t.Fatalf("a stale checkpoint passed as fresh: %v", cp.Cosigned)
			}
		}
	})
}
