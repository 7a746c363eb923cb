package vault

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// Section 7, "Tickets": a ticket is used only for its purpose and by its
// user id; used otherwise, it is consumed and answered unknown-handle.
func TestRealmTicketPurposeIsChecked(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "pw", 5)
	r := s.realms[0]
	key := s.version.UnlockKeys[0]

	// A register ticket (for an account with no record) opens no session,
	// even with a tag under an empty key.
	stranger := s.vaults[0].realm("stranger")
	reg, err := stranger.Challenge(ctx, protocol.PurposeRegister, s.version.ID())
	if err != nil {
		t.Fatal(err)
	}
	_, err = stranger.UnlockWithTag(ctx, reg, key, tagFor(nil, reg.Handle, reg.Nonce))
	wantCode(t, err, protocol.CodeUnknownHandle)

	// A session ticket and an evaluation ticket register nothing.
	sessionTicket, err := r.Challenge(ctx, protocol.PurposeSession, s.version.ID())
	if err != nil {
		t.Fatal(err)
	}
	for name, handle := range map[string][]byte{"session": sessionTicket.Handle, "evaluation": s.userTicket(1).Handle} {
		_, err := r.Register(ctx, handle, s.version.Material(1))
		if protocol.CodeOf(err) != protocol.CodeUnknownHandle {
			t.Fatalf("a %s ticket used to register: %v", name, err)
		}
	}
	// ...and the session ticket is used up.
	_, err = s.unlock(1, sessionTicket)
	wantCode(t, err, protocol.CodeUnknownHandle)

	// Another user id cannot use a user's ticket, and its try uses it up.
	tk := s.userTicket(1)
	_, err = stranger.Unlock(ctx, tk, key)
	wantCode(t, err, protocol.CodeUnknownHandle)
	_, err = s.unlock(1, tk)
	wantCode(t, err, protocol.CodeUnknownHandle)
}

// Section 7, "Tickets": one user id holds at most 4 live tickets. A fifth
// evaluation while four are pending is busy and not counted; a fifth
// ticket otherwise drops the oldest ticket that counted nothing; other
// users are not affected.
func TestRealmTicketQuotaPerUser(t *testing.T) {
	ctx := context.Background()
	s := newRealmSet(t, 3, 2, "pw", 10)
	h, r := s.vaults[0], s.realms[0]
	for range maxTicketsPerUser {
		s.userTicket(1)
	}
	_, err := s.evaluate(1)
	wantCode(t, err, protocol.CodeBusy)
	if c := s.committedRealm(1); c.Attempts != maxTicketsPerUser {
		t.Fatalf("%d attempts counted, want %d: the busy one was counted", c.Attempts, maxTicketsPerUser)
	}
	_, err = r.Challenge(ctx, protocol.PurposeSession, s.version.ID())
	wantCode(t, err, protocol.CodeBusy)
	if _, err := h.realm("stranger").Challenge(ctx, protocol.PurposeRegister, s.version.ID()); err != nil {
		t.Fatalf("another user was refused: %v", err)
	}

	h.clock.Advance(h.v.opts.LoginTTL + time.Second)
	var challenges []*realmTicketHandle
	for range maxTicketsPerUser {
		tk, err := r.Challenge(ctx, protocol.PurposeSession, s.version.ID())
		if err != nil {
			t.Fatal(err)
		}
		challenges = append(challenges, &realmTicketHandle{tk.Handle, tk.Nonce})
	}
	// A fifth ticket, an evaluation, drops the oldest challenge.
	fifth := s.userTicket(1)
	if _, err := s.unlock(1, challenges[0].ticket()); protocol.CodeOf(err) != protocol.CodeUnknownHandle {
		t.Fatalf("the oldest challenge ticket survived a fifth ticket: %v", err)
	}
	for _, c := range append(challenges[1:], &realmTicketHandle{fifth.Handle, fifth.Nonce}) {
		if _, err := s.unlock(1, c.ticket()); err != nil {
			t.Fatalf("a ticket within the quota: %v", err)
		}
	}
}
