package vault

import (
	"bytes"
	"context"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// The happy path of a 2-of-3 set: open registration at three vaults, a
// probe, evaluations at two that combine to the dealt key's output, unlocks
// with the derived unlock keys, and sessions that confirm, commit and
// report.
func TestRealmRegisterEvaluateUnlockConfirm(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "correct horse", 5)
	ver := s.version

	for i, r := range s.realms {
		p, err := r.Probe(ctx)
		if err != nil {
			t.Fatalf("probe %d: %v", i+1, err)
		}
		held := p.Held(ver.ID())
		if p.State != protocol.RealmLive || held == nil || held.Status != protocol.VersionPending ||
			held.Origin != protocol.OriginOpen || held.Index != uint(i+1) || !bytes.Equal(held.ManifestHash, ver.ManifestHash) ||
			p.TriesLeft != 5 || p.Limit != 5 {
			t.Fatalf("probe %d: %+v", i+1, p)
		}
	}

	rec, sessions, err := s.recover("correct horse", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Two realms' evaluations combine to the dealt key's own output.
	want, err := ver.Dealing.Evaluate(realmkey.Input(ver.SetID, []byte("correct horse")))
	if err != nil || !bytes.Equal(rec.Output, want) {
		t.Fatalf("combined output differs from the dealt key's: %v", err)
	}
	for m, e := range rec.Evaluations {
		if e.Receipt.AttemptsTotal != 1 || e.Receipt.TriesLeft != 4 || e.Receipt.FailedSinceSuccess != 0 {
			t.Fatalf("attempt receipt %d: %+v", rec.Indices[m], e.Receipt)
		}
	}
	for m, sess := range sessions {
		i := rec.Indices[m]
		if sess.Receipt.TriesLeft != 5 || sess.Receipt.FailedSinceSuccess != 0 {
			t.Fatalf("unlocked receipt %d: %+v", i, sess.Receipt)
		}
		// Before the confirmation the evaluation is still counted.
		if c := s.committedRealm(i); c.counter() != 1 || c.Successes != 0 {
			t.Fatalf("realm %d before confirming: counter %d successes %d", i, c.counter(), c.Successes)
		}
		got, err := sess.Commit(ctx, ver.ID())
		if err != nil {
			t.Fatalf("commit at %d: %v", i, err)
		}
		if held := got.Held(ver.ID()); held == nil || held.Status != protocol.VersionCommitted || got.TriesLeft != 5 ||
			got.SuccessesTotal != 1 {
			t.Fatalf("committed receipt %d: %+v", i, got)
		}
		st, err := sess.Status(ctx)
		if err != nil || st.TriesLeft != 5 {
			t.Fatalf("status at %d: %v %+v", i, err, st)
		}
		if c := s.committedRealm(i); c.counter() != 0 || c.Successes != 1 || c.Versions[0].Status != protocol.VersionCommitted {
			t.Fatalf("realm %d after confirming: counter %d, successes %d, status %d", i, c.counter(), c.Successes, c.Versions[0].Status)
		}
	}
}
