package vault

import (
	"context"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// N10 and V3: a put-version in a session on the pending version P commits P
// first, erasing the committed version; it is a commit, and a commit ends
// every other session of the user. Attack: another device's session, opened
// before the put (on P), is held by the host and used after it, as if
// nothing had changed at the realm.
func TestRealmAttackPutVersionCommitEndsOtherSessions(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "old", 5)
	v := s.version
	onV := s.commitAt(1, v)
	w := s.newVersion("new", 5, nil)
	if _, err := onV.PutVersion(ctx, w.Material(1)); err != nil {
		t.Fatal(err)
	}
	deviceA := s.sessionByChallenge(1, w)
	deviceB := s.sessionByChallenge(1, w)
	if _, err := deviceB.Status(ctx); err != nil { // confirmed, in use
		t.Fatal(err)
	}
	x := s.newVersion("newer", 5, nil)
	got, err := deviceA.PutVersion(ctx, x.Material(1))
	if err != nil {
		t.Fatal(err)
	}
	if held := got.Held(w.ID()); held == nil || held.Status != protocol.VersionCommitted {
		t.Fatalf("the put did not commit W first: %+v", got.Versions)
	}
	_, err = deviceB.Status(ctx)
	wantCode(t, err, protocol.CodeUnknownHandle)
}
