package vault

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

func userStatus(t testing.TB, c *testclient.Client) *protocol.UserStatus {
	t.Helper()
	st, _, err := c.UserStatus(context.Background())
	if err != nil {
		t.Fatalf("user status: %v", err)
	}
	return st
}

// The user status spends nothing: asked again and again it shows the same
// count, commits nothing of its own, and a wrong password afterwards is
// counted as the first one would be. What it shows is what the receipts
// say.
func TestAUserStatusCountsNothing(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("nora")
	reg, err := c.Register(context.Background(), []byte("right"), newBackupKey(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	commits, _ := h.store.Stats()
	for range 20 {
		st := userStatus(t, c)
		if st.TriesLeft != 3 || st.FailedSinceSuccess != 0 || st.Limit != 3 || st.Generation != reg.Generation ||
			st.AttemptsTotal != 0 || st.StoreSequence != reg.StoreSequence {
			t.Fatalf("status after registering: %+v", st)
		}
	}
	if now, _ := h.store.Stats(); now != commits {
		t.Fatalf("20 user statuses made %d commits", now-commits)
	}
	if r := h.committedRecord("nora"); r.Attempts != 0 || r.counter() != 0 {
		t.Fatalf("user statuses changed the record: %+v", r)
	}
	_, attempt, err := c.Login(context.Background(), []byte("wrong"))
	if !errors.Is(err, testclient.ErrWrongPassword) || attempt.TriesLeft != 2 {
		t.Fatalf("the first wrong password after 20 statuses: %v %+v", err, attempt)
	}
	st := userStatus(t, c)
	if st.TriesLeft != attempt.TriesLeft || st.FailedSinceSuccess != attempt.FailedSinceSuccess+1 ||
		st.AttemptsTotal != attempt.AttemptsTotal || st.SuccessesTotal != attempt.SuccessesTotal ||
		st.StoreSequence != attempt.StoreSequence {
		t.Fatalf("status %+v after the attempt receipt %+v", st, attempt)
	}
}

// After a confirmed login the status shows what the release receipt said
// would be left once confirmed, and one more success; after one that was
// never confirmed, the login counts as a failed attempt.
func TestAUserStatusAgreesWithTheReleaseReceipt(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("olga")
	key := register(t, c, "right", 5)
	c.Login(context.Background(), []byte("wrong"))
	c.Login(context.Background(), []byte("wrong"))

	s := mustLogin(t, c, "right", key)
	if st := userStatus(t, c); st.TriesLeft != 2 || st.FailedSinceSuccess != 3 || st.SuccessesTotal != s.Released.SuccessesTotal {
		t.Fatalf("status before the confirmation: %+v (release %+v)", st, s.Released)
	}
	mustConfirm(t, s, key)
	st := userStatus(t, c)
	if st.TriesLeft != s.Released.TriesLeft || st.TriesLeft != 5 || st.FailedSinceSuccess != 0 ||
		st.AttemptsTotal != s.Released.AttemptsTotal || st.SuccessesTotal != s.Released.SuccessesTotal+1 {
		t.Fatalf("status %+v after the confirmed release %+v", st, s.Released)
	}
}

// A locked record shows no tries left and, while its final login may still
// revive it, how long for; once that login has expired, no revival.
func TestAUserStatusOfALockedRecord(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("pia")
	register(t, c, "right", 2)
	c.Login(context.Background(), []byte("wrong"))
	if _, err := loginStart(t, h.v, "pia"); err != nil { // the final login, left pending
		t.Fatal(err)
	}
	st := userStatus(t, c)
	if st.TriesLeft != 0 || st.FailedSinceSuccess != 2 || st.RevivableMillis == 0 ||
		time.Duration(st.RevivableMillis)*time.Millisecond > h.v.opts.LoginTTL {
		t.Fatalf("status with the final login pending: %+v", st)
	}
	h.clock.Advance(h.v.opts.LoginTTL + time.Second)
	h.v.Expire()
	if st := userStatus(t, c); st.TriesLeft != 0 || st.RevivableMillis != 0 {
		t.Fatalf("status once the final login expired: %+v", st)
	}
}

// An unknown user's status is shaped as a known user's: the same size, the
// same fields, and values a record would show after the fake attempt
// receipt the same user's KE1 gets (the same generation and totals).
// Asking again shows the same, and creates nothing.
func TestAUserStatusOfAnUnknownUserLooksLikeARecord(t *testing.T) {
	h := newHarness(t, Options{MaxLimit: 10})
	known := h.client("quinn")
	register(t, known, "right", 10)
	known.Login(context.Background(), []byte("wrong"))
	unknown := h.client("ruth!") // an id of the same length

	_, knownReply, err := known.UserStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, unknownReply, err := unknown.UserStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := protocol.Encode(protocol.TypeUserStatus, knownReply)
	ub, _ := protocol.Encode(protocol.TypeUserStatus, unknownReply)
	if len(kb) != len(ub) || len(knownReply.Body) != protocol.UserStatusBodySize || len(unknownReply.Body) != protocol.UserStatusBodySize {
		t.Fatalf("reply sizes: known %d, unknown %d", len(kb), len(ub))
	}
	_, attempt, err := unknown.Login(context.Background(), []byte("anything"))
	if !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatal(err)
	}
	if st.Generation != attempt.Generation || st.AttemptsTotal != attempt.AttemptsTotal ||
		st.SuccessesTotal != attempt.SuccessesTotal || st.Limit != attempt.Limit || st.TriesLeft != attempt.TriesLeft ||
		st.FailedSinceSuccess != attempt.FailedSinceSuccess+1 || st.RevivableMillis != 0 {
		t.Fatalf("unknown user's status %+v does not follow its fake attempt receipt %+v", st, attempt)
	}
	if again := userStatus(t, unknown); again.Generation != st.Generation || again.AttemptsTotal != st.AttemptsTotal ||
		again.TriesLeft != st.TriesLeft {
		t.Fatalf("an unknown user's status changed: %+v then %+v", st, again)
	}
	if _, ok := h.store.Committed(userKey([]byte("ruth!"))); ok {
		t.Fatal("a user status created a record")
	}
}

// The vault answers the request it got: the status carries the request's
// user id and nonce, so a host that swaps either gets a status the client
// refuses (protocol.UserStatusReply.Verify).
func TestAUserStatusEchoesTheRequest(t *testing.T) {
	h := newHarness(t, Options{})
	register(t, h.client("sam"), "right", 3)
	req := protocol.NewUserStatusRequest([]byte("sam"))
	b, _ := protocol.Encode(protocol.TypeUserStatus, req)
	var reply protocol.UserStatusReply
	if err := protocol.Decode(h.v.handle(context.Background(), b), protocol.TypeUserStatus, &reply); err != nil {
		t.Fatal(err)
	}
	if _, err := reply.Verify(h.v.Identity().SigningKey, protocol.NewUserStatusRequest([]byte("sam"))); !errors.Is(err, protocol.ErrReplayedStatus) {
		t.Fatalf("another request's nonce: %v", err)
	}
	if _, err := reply.Verify(h.v.Identity().SigningKey, &protocol.UserStatusRequest{UserID: []byte("tom"), Nonce: req.Nonce}); !errors.Is(err, protocol.ErrOtherUser) {
		t.Fatalf("another user: %v", err)
	}
}

// BenchmarkUserStatus times a user status for a known and an unknown user,
// side by side in one run: the two should cost the same (the fake values are
// computed for both; only a known user's record is parsed). Compare the two
// sub-benchmarks' ns/op; no test asserts a time.
func BenchmarkUserStatus(b *testing.B) {
	h := newHarness(b, Options{})
	register(b, h.client("known"), "pw", 10)
	for _, user := range []string{"known", "other"} {
		b.Run(user, func(b *testing.B) {
			req, _ := protocol.Encode(protocol.TypeUserStatus, protocol.NewUserStatusRequest([]byte(user)))
			for b.Loop() {
				h.v.Handle(context.Background(), req)
			}
		})
	}
}
