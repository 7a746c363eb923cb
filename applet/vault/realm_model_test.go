package vault

import (
	"context"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
)

// The executable model of a realm's counting rules (REALMS.md, section 9,
// N1-N10, and the invariant of 12.1), as model_test.go is the single
// vault's.
//
// One realm holds one account's record: one version with limit L (of a
// 2-of-2 set whose other realm is never asked; the rules are per realm).
// The model enumerates every interleaving of what the operator and the user
// can make happen there and plays each against the real vault:
//
//   - the operator's guess: an evaluation of a password it made up. It
//     never learns the password, so it can only use the ticket up with a
//     wrong tag: a random one, or the tag the user last sent (for another
//     ticket).
//   - the user's evaluation of the right password, or purpose-1 challenge,
//     from one of up to four devices, each holding one ticket;
//   - the user's unlock delivered, delivered with its reply dropped, or
//     withheld (not delivered yet, or ever); a replay of it, as sent;
//   - the session's first command, confirming the unlocked receipt the
//     device received (or never sent);
//   - the expiry of tickets (the vault's clock moved by Options.Now, less
//     than a session's idle time), and a reboot (a new vault on the same
//     store: tickets, sessions and the final ticket's record forgotten).
//
// Every ticket, receipt and outcome is the vault's; the model keeps the
// ground truth the vault cannot see (which evaluations the operator
// originated, which ones a confirmation or a revival released, which
// unlocked receipts the user confirmed, that is, was shown) and predicts
// every outcome. After every event it checks, on the committed record:
//
//  1. the evaluations still counted (attempts − watermark) are at most L,
//     below L while live; attempts_total is exactly the evaluations made,
//     each committed before its share was read (N1); and the watermark
//     never passes what the model released: a release follows only the
//     confirmation of an unlocked receipt the user received, or is the
//     final ticket's own evaluation, released by its revival;
//  2. 12.1's invariant: the operator's evaluations that no receipt the user
//     confirmed showed number at most L; and every receipt the user gets
//     reports at least the operator's evaluations it is the first to show;
//  3. successes only grow, by one for each confirmation the realm accepted,
//     each naming the unlocked receipt the device received;
//  4. no total goes backwards, across reboots too;
//  5. a tombstone comes back only by the revival of the final ticket whose
//     evaluation made it, with the right tag, once (a replay finds nothing),
//     with the watermark one past and the other totals as they were; a
//     live record becomes a tombstone only by the evaluation reaching L.
//
// and, where an interleaving ends and after every event of the replays on
// the real store, that the realm's signed probe says the same. On a
// tombstone it also checks that evaluations and challenges are refused
// with a signed locked receipt and nothing counted (N3, N8), and the ticket
// bound (4 per user: a fifth drops the challenge ticket, or is busy before
// counting).
//
// Interleavings are explored depth first; two that reach the same abstract
// state (the committed record, what each device holds, the budgets used
// and what of the ground truth a later check can tell apart) have the same
// futures, so each abstract state is expanded once. Devices are
// interchangeable, so the state holds them as a multiset. Events that
// cannot change anything a check can see are not tried: evaluations and
// challenges on a tombstone (checked once where the run ends), a dropped
// reply to a refused unlock, an expiry or a reboot with nothing in RAM, and
// any event once the tombstone is one nothing can revive (the run ends
// there, after checking that every ticket and session still held is
// refused). The vault's RAM (cloneForModel, realm tables included) and the
// store are cloned per branch, so nothing is replayed; a sample of the
// complete interleavings is then replayed from scratch on the real record
// store.

type realmModelPhase uint8

const (
	rmIdle      realmModelPhase = iota // nothing in flight
	rmTicket                           // holds a ticket, unlock not sent
	rmSession                          // unlocked, the receipt arrived, not confirmed
	rmConfirmed                        // the confirmation was accepted
	rmEnded                            // nothing more can happen to this actor's ticket
)

type realmModelEvent struct {
	kind string // see realmModelRun.apply
	slot int
}

func (e realmModelEvent) String() string {
	if e.slot < 0 {
		return e.kind
	}
	return fmt.Sprintf("%s#%d", e.kind, e.slot)
}

type realmModelBounds struct {
	limit          uint
	users          int // the user's devices, one ticket each: at most this many tickets in flight
	evaluations    int // evaluation requests in all, the operator's and the user's
	challenges     int // the user's purpose-1 challenges in all
	reboots        int // a reboot forgets tickets and sessions
	ticketExpiries int // of tickets only: a final ticket dies while a session waits
}

// realmModelSlot is one of the user's devices and the ticket it holds. The
// operator is one more actor, which holds no ticket: it cannot make a tag,
// so a ticket of its own is only ever used up with a wrong one, at once
// (holding it longer would change nothing but the table's room).
type realmModelSlot struct {
	phase     realmModelPhase
	challenge bool   // the ticket came from a purpose-1 challenge
	attempt   uint64 // the ticket's place: its evaluation, or attempts at issue
	final     bool   // its evaluation made the tombstone
	ticket    *realmtest.Ticket
	receipt   *protocol.RealmReceipt // the ticket's
	keys      protocol.SessionKeys
	unlocked  protocol.SignedRealmReceipt // what a confirmation names
	shows     uint64                      // the unlocked receipt's attempts_total
}

// realmModelVersion is what the user's devices know of the version: its id
// and manifest, and the unlock key of this realm. blinded is an element
// every evaluation sends (the realm cannot tell whose input it blinds).
type realmModelVersion struct {
	ver       *realmtest.Version
	unlockKey []byte
	blinded   []byte
	identity  *protocol.Identity
}

type realmModelRun struct {
	t  testing.TB
	b  realmModelBounds
	vv *realmModelVersion
	w  *modelWorld

	slots []realmModelSlot
	// The ground truth, over evaluation ordinals 1..63 (bit i is ordinal i).
	evals     uint64 // evaluations the vault made
	operator  uint64 // those the operator originated
	released  uint64 // those a confirmation or a revival released
	shownUpTo uint64 // the highest attempts_total of an unlocked receipt the user confirmed
	successes uint64 // confirmations the realm accepted
	tombBy    uint64 // the evaluation whose count made the current tombstone
	revived   uint64 // the tombstones (by the evaluation that made them) revived
	revival   bool   // the event being applied revived the record
	finalEval bool   // the event being applied made the tombstone
	evaluator modelRole

	// Budgets used.
	evaluations, challenges, reboots, ticketExpiries int

	lastTag []byte // the last tag the user sent, for the operator to replay
	// probeEvery asks for a signed probe after every event, not only where
	// an interleaving ends: the replays on the real store do.
	probeEvery bool

	last  *realmRecord
	trace []realmModelEvent
}

const realmModelUser = "realm-model"

func (r *realmModelRun) realm() *realmtest.Realm {
	return &realmtest.Realm{Identity: r.vv.identity, UserID: []byte(realmModelUser),
		RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return r.w.v.handle(ctx, req), nil }}
}

func (r *realmModelRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%v: %s", r.trace, fmt.Sprintf(format, args...))
}

// hook sees every evaluation just before the share is read: it numbers it,
// remembers who asked, and checks N1 (the count is already in the store;
// realm_counting_test.go checks it is committed).
func (r *realmModelRun) hook() {
	r.w.v.onRealmEvaluate = func([]byte) {
		n := uint64(bits.OnesCount64(r.evals)) + 1
		if n > 63 {
			r.fatalf("more evaluations than the model numbers")
		}
		r.evals |= 1 << n
		if r.evaluator == roleOperator {
			r.operator |= 1 << n
		}
		if c := r.committed(); c.Attempts < n {
			r.fatalf("evaluation %d reads the share with %d attempts committed", n, c.Attempts)
		}
	}
}

func (r *realmModelRun) boot() {
	v, err := New(context.Background(), r.w.store, r.w.opts)
	if err != nil {
		r.fatalf("boot: %v", err)
	}
	r.w.v = v
	r.hook()
}

func (r *realmModelRun) committed() *realmRecord {
	b, found, err := r.w.store.Get(realmKey([]byte(realmModelUser)))
	if err != nil || !found {
		r.fatalf("the realm record: found %v, %v", found, err)
	}
	rec, err := parseRealmRecord(b)
	if err != nil {
		r.fatalf("%v", err)
	}
	return rec
}

func (r *realmModelRun) events() []realmModelEvent {
	if r.dead() {
		return nil // finish checks what is left
	}
	var out []realmModelEvent
	// On a tombstone an evaluation or a challenge changes nothing (N3, N8:
	// checked where the run ends), so only budget would be spent: they are
	// not tried there.
	live := r.last.live()
	if live && r.evaluations < r.b.evaluations {
		out = append(out, realmModelEvent{"guess", -1})
	}
	// A device holding nothing starts: the first one, since they are
	// interchangeable. A session the user never confirms is an unlock
	// whose reply was dropped, as far as anyone can tell, so a device
	// holding a session does not start again.
	free := slices.IndexFunc(r.slots, func(s realmModelSlot) bool { return s.phase != rmTicket && s.phase != rmSession })
	for i, s := range r.slots {
		if live && i == free {
			if r.evaluations < r.b.evaluations {
				out = append(out, realmModelEvent{"evaluate", i})
			}
			if r.challenges < r.b.challenges {
				out = append(out, realmModelEvent{"challenge", i})
			}
		}
		switch s.phase {
		case rmSession:
			out = append(out, realmModelEvent{"confirm", i})
		case rmTicket:
			out = append(out, realmModelEvent{"unlock", i})
			if live || r.canRevive(&r.slots[i]) {
				// A refused unlock's reply says nothing the user could
				// confirm: dropping it is the same event.
				out = append(out, realmModelEvent{"unlock-drop-reply", i})
			}
		}
	}
	// An expiry or a reboot that finds no ticket (or session) of the user's
	// in RAM changes nothing the model can tell from not having it.
	held := slices.IndexFunc(r.slots, func(s realmModelSlot) bool { return s.phase == rmSession }) >= 0
	if r.ticketExpiries < r.b.ticketExpiries && r.liveTickets() > 0 {
		out = append(out, realmModelEvent{"expire-tickets", -1})
	}
	if r.reboots < r.b.reboots && (held || r.liveTickets() > 0) {
		out = append(out, realmModelEvent{"reboot", -1})
	}
	return out
}

func (r *realmModelRun) apply(e realmModelEvent) {
	r.trace = append(r.trace, e)
	r.revival, r.finalEval = false, false
	switch e.kind {
	case "guess":
		r.evaluations++
		r.guess()
	case "evaluate":
		r.evaluations++
		r.evaluate(e.slot)
	case "challenge":
		r.challenges++
		r.challenge(e.slot)
	case "unlock":
		r.unlock(e.slot, true)
	case "unlock-drop-reply":
		r.unlock(e.slot, false)
	case "confirm":
		r.confirm(e.slot)
	case "expire-tickets":
		r.ticketExpiries++
		r.w.clock.Advance(r.w.opts.LoginTTL + time.Second) // less than SessionTTL
		r.w.v.Expire()
		r.forget(rmTicket)
	case "reboot":
		r.reboots++
		r.w.v.Close()
		r.boot()
		r.forget(rmTicket, rmSession)
	default:
		r.fatalf("unknown event %v", e)
	}
	if r.finalEval && r.probeEvery {
		r.checkTombstoneRefuses()
	}
	r.check()
}

// forget ends the devices in the given phases: what they held in the
// realm's RAM is gone. A final ticket's unlock, with the right tag, then
// finds nothing to revive (N9); in the replays every ticket and session
// forgotten is tried.
func (r *realmModelRun) forget(phases ...realmModelPhase) {
	for i := range r.slots {
		s := &r.slots[i]
		if !slices.Contains(phases, s.phase) {
			continue
		}
		var err error
		switch {
		case s.phase == rmTicket && (s.final || r.probeEvery):
			_, err = r.realm().Unlock(context.Background(), s.ticket, r.vv.unlockKey)
		case s.phase == rmSession && r.probeEvery:
			err = r.sendConfirm(s)
		default:
			err = protocol.Errorf(protocol.CodeUnknownHandle, "not tried")
		}
		if protocol.CodeOf(err) != protocol.CodeUnknownHandle {
			r.fatalf("a forgotten ticket or session: %v", err)
		}
		s.phase = rmEnded
	}
}

// unshownOperator counts the operator's evaluations in (from, to].
func (r *realmModelRun) unshownOperator(from, to uint64) int {
	return bits.OnesCount64(r.operator & ordinalsUpTo(to) &^ ordinalsUpTo(from))
}

// ordinalsUpTo is the set of ordinals 1..n.
func ordinalsUpTo(n uint64) uint64 {
	if n >= 63 {
		return ^uint64(1)
	}
	return (uint64(1)<<(n+1) - 1) &^ 1
}

// checkTells checks that a receipt shown to the user reports every
// evaluation of the operator it is the first to show: those after the last
// receipt the user confirmed, up to this one's attempts_total.
func (r *realmModelRun) checkTells(what string, rc *protocol.RealmReceipt) {
	if want := r.unshownOperator(r.shownUpTo, uint64(rc.AttemptsTotal)); int(rc.FailedSinceSuccess) < want {
		r.fatalf("the %s receipt reports %d failed attempts; the operator made %d the user was never shown",
			what, rc.FailedSinceSuccess, want)
	}
}

// guess is the operator's evaluation of a password it guessed; when it
// gets a ticket, it uses it up with the last tag the user sent (for another
// ticket) or, before any, a random one.
func (r *realmModelRun) guess() {
	var s realmModelSlot
	r.evaluateInto(&s, roleOperator)
	if s.phase != rmTicket {
		return
	}
	tag := r.lastTag
	if tag == nil {
		tag = newBackupKey(r.t)[:32]
	}
	_, err := r.realm().UnlockWithTag(context.Background(), s.ticket, newBackupKey(r.t)[:32], tag)
	if protocol.CodeOf(err) != protocol.CodeAuthentication {
		r.fatalf("the operator's unlock with a wrong tag: %v", err)
	}
}

// evaluate is the user's evaluation of the right password.
func (r *realmModelRun) evaluate(i int) {
	s := &r.slots[i]
	r.evaluateInto(s, roleUser)
	if s.phase == rmTicket {
		r.checkTells("attempt", s.receipt)
	}
}

func (r *realmModelRun) evaluateInto(s *realmModelSlot, who modelRole) {
	before := r.last
	r.evaluator = who
	busy := r.ticketRoom()
	e, err := r.realm().Evaluate(context.Background(), r.vv.ver.ID(), r.vv.blinded, r.vv.ver.ManifestHash, 1)
	made := uint64(bits.OnesCount64(r.evals))
	*s = realmModelSlot{phase: rmEnded}
	if busy {
		if protocol.CodeOf(err) != protocol.CodeBusy || made != before.Attempts || r.committed().Attempts != made {
			r.fatalf("an evaluation with %d tickets live: %v, %d evaluations made, %d before", maxTicketsPerUser, err, made, before.Attempts)
		}
		return
	}
	if err != nil {
		r.fatalf("evaluation: %v", err)
	}
	if !before.live() {
		if e.Receipt.Kind != protocol.RealmReceiptLocked || uint64(e.Receipt.AttemptsTotal) != made {
			r.fatalf("an evaluation on a tombstone: %+v", e.Receipt)
		}
		return // N3: nothing counted (the hook would have numbered it)
	}
	if e.Receipt.Kind != protocol.RealmReceiptAttempt || uint64(e.Receipt.AttemptsTotal) != made || made != before.Attempts+1 {
		r.fatalf("an evaluation of a live record: receipt %d with %d attempts, %d evaluations made, %d before",
			e.Receipt.Kind, e.Receipt.AttemptsTotal, made, before.Attempts)
	}
	s.phase, s.ticket, s.receipt, s.attempt = rmTicket, &e.Ticket, e.Receipt, made
	s.final = e.Receipt.State == protocol.RealmLocked
	if wantFinal := made-before.Watermark >= uint64(r.b.limit); s.final != wantFinal {
		r.fatalf("evaluation %d with watermark %d, limit %d: final %v", made, before.Watermark, r.b.limit, s.final)
	}
	if s.final {
		r.finalEval, r.tombBy = true, made
	}
}

// ticketRoom predicts REALMS.md 7's bound of maxTicketsPerUser live tickets
// for one more request that reserves one: at the bound, the oldest ticket
// that counted nothing (a challenge's) is dropped to make room; with none,
// the request is busy, before anything is counted (N2).
func (r *realmModelRun) ticketRoom() (busy bool) {
	live, challenge := 0, -1
	for i, s := range r.slots {
		if s.phase == rmTicket {
			live++
			if s.challenge {
				if challenge >= 0 {
					r.fatalf("the model keeps one challenge ticket at most")
				}
				challenge = i
			}
		}
	}
	switch {
	case live < maxTicketsPerUser:
		return false
	case challenge >= 0:
		r.slots[challenge].phase = rmEnded
		return false
	default:
		return true
	}
}

// liveTickets counts the user's tickets the realm holds.
func (r *realmModelRun) liveTickets() int {
	n := 0
	for _, s := range r.slots {
		if s.phase == rmTicket {
			n++
		}
	}
	return n
}

// checkTombstoneRefuses checks N3 and N8 on a tombstone (in the
// exploration where an interleaving ends on one, in the replays wherever
// one is made): an evaluation gets a signed locked receipt and nothing is
// counted, and a challenge gets a locked receipt and no ticket. (Not at the
// ticket bound, where each would drop a challenge ticket of the user's.)
func (r *realmModelRun) checkTombstoneRefuses() {
	if r.liveTickets() >= maxTicketsPerUser {
		return
	}
	ctx := context.Background()
	made := bits.OnesCount64(r.evals)
	e, err := r.realm().Evaluate(ctx, r.vv.ver.ID(), r.vv.blinded, r.vv.ver.ManifestHash, 1)
	if err != nil || e.Receipt.Kind != protocol.RealmReceiptLocked || e.Handle != nil ||
		bits.OnesCount64(r.evals) != made || r.committed().Attempts != uint64(made) {
		r.fatalf("an evaluation on the tombstone: %v, handle %x", err, e.Handle)
	}
	tk, err := r.realm().Challenge(ctx, protocol.PurposeSession, r.vv.ver.ID())
	if err != nil || tk.Receipt.Kind != protocol.RealmReceiptLocked || tk.Handle != nil {
		r.fatalf("a challenge on the tombstone: %v, handle %x", err, tk.Handle)
	}
}

func (r *realmModelRun) challenge(i int) {
	s := &r.slots[i]
	before := r.last
	busy := r.ticketRoom()
	tk, err := r.realm().Challenge(context.Background(), protocol.PurposeSession, r.vv.ver.ID())
	*s = realmModelSlot{phase: rmEnded}
	if busy {
		if protocol.CodeOf(err) != protocol.CodeBusy {
			r.fatalf("a challenge with %d tickets live: %v", maxTicketsPerUser, err)
		}
		return
	}
	if err != nil {
		r.fatalf("challenge: %v", err)
	}
	if !before.live() {
		if tk.Receipt.Kind != protocol.RealmReceiptLocked {
			r.fatalf("a challenge on a tombstone: %+v", tk.Receipt)
		}
		return
	}
	if tk.Receipt.Kind != protocol.RealmReceiptChallenge || uint64(tk.Receipt.AttemptsTotal) != before.Attempts {
		r.fatalf("a challenge on a live record: %+v", tk.Receipt)
	}
	s.phase, s.ticket, s.attempt, s.challenge = rmTicket, tk, before.Attempts, true
}

// dead reports a tombstone that nothing in the model can bring back: no
// device holds the ticket that may revive it. Every future then only
// refuses, in any order, so the run ends there and finish checks the
// refusals once.
func (r *realmModelRun) dead() bool {
	if r.last.live() {
		return false
	}
	for i := range r.slots {
		if r.slots[i].phase == rmTicket && r.canRevive(&r.slots[i]) {
			return false
		}
	}
	return true
}

// finish ends an interleaving: the signed probe describes the record, and
// on a dead tombstone every ticket and session the user still holds is
// refused.
func (r *realmModelRun) finish() {
	r.probe()
	if !r.dead() {
		return
	}
	r.revival, r.finalEval = false, false
	r.checkTombstoneRefuses()
	for i := range r.slots {
		switch r.slots[i].phase {
		case rmTicket:
			r.trace = append(r.trace, realmModelEvent{"unlock", i})
			r.unlock(i, true)
		case rmSession:
			r.trace = append(r.trace, realmModelEvent{"confirm", i})
			r.confirm(i)
		}
		r.check()
	}
}

// canRevive is N4's rule as the model sees it: the final ticket whose
// evaluation made the tombstone that is still there.
func (r *realmModelRun) canRevive(s *realmModelSlot) bool {
	return s.final && r.tombBy == s.attempt && r.revived&(1<<s.attempt) == 0
}

func (r *realmModelRun) unlock(i int, replyArrives bool) {
	s := &r.slots[i]
	before := r.last
	realm := r.realm()
	tag := tagFor(r.vv.unlockKey, s.ticket.Handle, s.ticket.Nonce)
	sent, err := realm.Seal(protocol.TypeRealmUnlock, &protocol.RealmUnlock{Handle: s.ticket.Handle, Tag: tag})
	if err != nil {
		r.t.Fatal(err)
	}
	r.lastTag = tag
	sess, err := realm.DeliverUnlock(context.Background(), sent, s.ticket, r.vv.unlockKey)
	revive := !before.live() && r.canRevive(s)
	// A replay of the same unlock, as sent, finds its ticket used up,
	// whatever the first one did: above all, a revival does not happen
	// twice. (Checked at every revival, and at every unlock of the
	// interleavings replayed on the real store.)
	if revive || r.probeEvery {
		if _, err := realm.DeliverUnlock(context.Background(), sent, s.ticket, r.vv.unlockKey); protocol.CodeOf(err) != protocol.CodeUnknownHandle {
			r.fatalf("a replayed unlock: %v", err)
		}
	}
	s.phase = rmEnded
	switch {
	case err == nil && (before.live() || revive):
		if revive {
			r.revival = true
			r.revived |= 1 << s.attempt
			r.released |= 1 << s.attempt // the final ticket's own evaluation, N4
			r.tombBy = 0
		}
		rc := sess.Receipt
		if uint64(rc.AttemptsTotal) != uint64(bits.OnesCount64(r.evals)) || rc.State != protocol.RealmLive {
			r.fatalf("the unlocked receipt: %+v", rc)
		}
		r.checkTells("unlocked", rc)
		if replyArrives {
			s.phase, s.keys, s.unlocked, s.shows = rmSession, sess.Keys, sess.Unlocked, uint64(rc.AttemptsTotal)
		}
	case err == nil:
		r.fatalf("a tombstone was unlocked by a ticket that may not revive it (final %v, attempt %d, tombstone by %d)",
			s.final, s.attempt, r.tombBy)
	case protocol.CodeOf(err) == protocol.CodeLocked && !before.live() && !revive:
	default:
		r.fatalf("the user's unlock (live %v, may revive %v): %v", before.live(), revive, err)
	}
}

// confirm sends the session's first command, a status naming the unlocked
// receipt the user received (N5).
func (r *realmModelRun) confirm(i int) {
	s := &r.slots[i]
	before := r.last
	err := r.sendConfirm(s)
	s.phase = rmEnded
	switch {
	case err == nil && before.live():
		s.phase = rmConfirmed
		r.successes++
		r.released |= ordinalsUpTo(s.attempt) & r.evals
		r.shownUpTo = max(r.shownUpTo, s.shows)
	case protocol.CodeOf(err) == protocol.CodeLocked && !before.live():
	default:
		r.fatalf("the confirmation (live %v): %v", before.live(), err)
	}
}

// sendConfirm sends a status command as the session's first, naming the
// unlocked receipt s received, and checks the receipt it gets back.
func (r *realmModelRun) sendConfirm(s *realmModelSlot) error {
	h := s.ticket.Handle
	cmd := &protocol.RealmCommand{Command: protocol.RealmStatus, ClientNonce: newBackupKey(r.t)[:protocol.ClientNonceSize],
		Confirm: protocol.RealmReceiptHash(&s.unlocked)}
	sealed, err := protocol.SealMessage(&s.keys.ToVault, 1, h, cmd)
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := protocol.Encode(protocol.TypeRealmSession, &protocol.Session{Handle: h, Seq: 1, Sealed: sealed})
	if err != nil {
		r.t.Fatal(err)
	}
	var reply protocol.SessionReply
	if err := protocol.Decode(r.w.v.handle(context.Background(), b), protocol.TypeRealmSession, &reply); err != nil {
		return err
	}
	var inner protocol.RealmReceiptReply
	if err := protocol.OpenMessage(&s.keys.ToClient, 1, h, reply.Sealed, &inner); err != nil {
		r.fatalf("the confirmation's reply does not open: %v", err)
	}
	if _, err := r.realm().Verify(&inner.Receipt, protocol.RealmCommandHash(h, 1, sealed), cmd.ClientNonce,
		protocol.RealmReceiptStatus); err != nil {
		r.fatalf("the confirmation's receipt: %v", err)
	}
	return nil
}

// probe checks that the realm's signed probe describes the committed
// record: what check reads there is what the realm attests.
func (r *realmModelRun) probe() {
	c := r.committed()
	p, err := r.realm().Probe(context.Background())
	if err != nil {
		r.fatalf("probe: %v", err)
	}
	state := protocol.RealmLive
	if !c.live() {
		state = protocol.RealmLocked
	}
	if p.State != state || uint64(p.AttemptsTotal) != c.Attempts || uint64(p.SuccessesTotal) != c.Successes ||
		uint64(p.FailedSinceSuccess) != c.counter() || p.Limit != r.b.limit || p.Held(r.vv.ver.ID()) == nil {
		r.fatalf("the probe %+v does not describe the committed record %s", p, totals(c))
	}
}

// check checks the model's promises against the committed record (which
// probe shows to be what the realm signs).
func (r *realmModelRun) check() {
	if r.probeEvery {
		r.probe()
	}
	c := r.committed()
	made := uint64(bits.OnesCount64(r.evals))
	// 1. The counter, every evaluation counted, no release without cause.
	if c.counter() > uint64(r.b.limit) || (c.live() && c.counter() >= uint64(r.b.limit)) {
		r.fatalf("%d unreleased evaluations, limit %d (live %v)", c.counter(), r.b.limit, c.live())
	}
	if c.Attempts != made {
		r.fatalf("attempts_total %d, %d evaluations made", c.Attempts, made)
	}
	if released := uint64(bits.OnesCount64(r.released)); c.Watermark > released {
		r.fatalf("the watermark is %d; only %d evaluations were released by a confirmation or a revival", c.Watermark, released)
	}
	// 2. The invariant of 12.1.
	if n := r.unshownOperator(r.shownUpTo, made); n > int(r.b.limit) {
		r.fatalf("the operator holds %d evaluations the user was never shown, limit %d", n, r.b.limit)
	}
	// 3. Successes.
	if c.Successes != r.successes {
		r.fatalf("the record counts %d successes, the realm accepted %d confirmations", c.Successes, r.successes)
	}
	// 4. Totals never go backwards.
	if c.Attempts < r.last.Attempts || c.Watermark < r.last.Watermark || c.Successes < r.last.Successes {
		r.fatalf("a total went backwards: %s after %s", totals(c), totals(r.last))
	}
	// 5. Tombstones.
	switch {
	case !r.last.live() && c.live():
		if !r.revival {
			r.fatalf("a tombstone came back without the final ticket's revival")
		}
		if c.Attempts != r.last.Attempts || c.Watermark != r.last.Watermark+1 || c.Successes != r.last.Successes {
			r.fatalf("a revival wrote %s over the tombstone %s", totals(c), totals(r.last))
		}
	case r.revival:
		r.fatalf("the model saw a revival the record does not show")
	case r.last.live() && !c.live():
		if !r.finalEval || c.counter() != uint64(r.b.limit) {
			r.fatalf("the record became a tombstone with counter %d, not by the evaluation reaching the limit", c.counter())
		}
	case r.finalEval:
		r.fatalf("the final evaluation left the record live")
	}
	r.last = c
}

// totals describes a record without its secrets.
func totals(c *realmRecord) string {
	return fmt.Sprintf("{state %d limit %d attempts %d watermark %d successes %d}", c.State, c.Limit, c.Attempts, c.Watermark, c.Successes)
}

// key is the abstract state: what decides the futures of this run.
func (r *realmModelRun) key() string {
	var b strings.Builder
	c := r.last
	// Of the ground truth, only what a future check can tell apart: the
	// operator's evaluations the user was not shown (shownUpTo only grows),
	// and the released ones above the lowest ticket still held (a
	// confirmation releases every evaluation up to its ticket's, and the
	// checks count them).
	made := uint64(bits.OnesCount64(r.evals))
	low := made
	for _, s := range r.slots {
		if s.phase == rmTicket || s.phase == rmSession {
			low = min(low, s.attempt)
		}
	}
	below := ordinalsUpTo(low)
	// Successes are not part of it: they only have to keep step with the
	// confirmations, which check compares.
	fmt.Fprintf(&b, "%d/%d/%d o%x r%d+%x s%d t%d b%d/%d/%d/%d |", c.State, c.Watermark, c.Attempts,
		r.operator&^ordinalsUpTo(r.shownUpTo), bits.OnesCount64(r.released&below), r.released&^below, r.shownUpTo,
		r.tombBy, r.evaluations, r.challenges, r.reboots, r.ticketExpiries)
	// The devices are interchangeable, and those holding nothing alike
	// whatever they did before: the slots are described as a sorted
	// multiset.
	var slots []string
	for _, s := range r.slots {
		switch s.phase {
		case rmTicket, rmSession:
			slots = append(slots, fmt.Sprintf("%d@%t/%d/%t/%d", s.phase, s.challenge, s.attempt, s.final, s.shows))
		default:
			slots = append(slots, "-")
		}
	}
	slices.Sort(slots)
	b.WriteString(strings.Join(slots, " "))
	return b.String()
}

// clone copies the run, its vault's RAM and its store, so that another
// event can be tried from the same state.
func (r *realmModelRun) clone() *realmModelRun {
	c := *r
	c.slots = append([]realmModelSlot(nil), r.slots...)
	c.trace = append([]realmModelEvent(nil), r.trace...)
	st := r.w.store.(*modelStore).clone()
	clock := &fakeClock{now: r.w.clock.Now()}
	opts := r.w.opts
	opts.Now = clock.Now
	c.w = &modelWorld{store: st, clock: clock, opts: opts, v: r.w.v.cloneForModel(st, opts)}
	c.hook()
	return &c
}

// cloneForModel copies the realm tables: tickets (the final one's record
// included), the finals' windows and sessions. The model opens no register
// ticket, whose record watch it would have to copy too.
func (r *realms) cloneForModel(opts *Options) *realms {
	c := newRealms(opts)
	copies := map[*realmTicket]*realmTicket{}
	r.tickets.mu.Lock()
	for h, tk := range r.tickets.byHandle {
		if tk.watch != nil {
			panic("vault: the realm model does not clone register tickets")
		}
		n := *tk
		n.userID, n.versionID, n.manifestHash = bytesCopy(tk.userID), bytesCopy(tk.versionID), bytesCopy(tk.manifestHash)
		n.nonce, n.unlockKey, n.share = bytesCopy(tk.nonce), bytesCopy(tk.unlockKey), bytesCopy(tk.share)
		if tk.counted != nil {
			n.counted = tk.counted.clone()
		}
		if tk.rec != nil {
			n.rec = tk.rec.clone()
		}
		copies[tk] = &n
		c.tickets.byHandle[h] = &n
	}
	for u, ut := range r.tickets.users {
		n := &userTickets{reserved: ut.reserved}
		for _, tk := range ut.live {
			n.live = append(n.live, copies[tk])
		}
		c.tickets.users[u] = n
	}
	c.tickets.reserved = r.tickets.reserved
	r.tickets.mu.Unlock()
	r.finals.mu.Lock()
	for u, f := range r.finals.m {
		tk, ok := copies[f.ticket]
		if !ok {
			tk = &realmTicket{userID: []byte(u)} // a ticket already taken
		}
		c.finals.set(tk, f.expires)
	}
	r.finals.mu.Unlock()
	r.sessions.mu.Lock()
	for h, e := range r.sessions.entries {
		s := e.value
		s.mu.Lock()
		n := &realmSession{userID: bytesCopy(s.userID), versionID: bytesCopy(s.versionID), manifestHash: bytesCopy(s.manifestHash),
			keys: s.keys, next: s.next, attempt: s.attempt, unlockedHash: bytesCopy(s.unlockedHash), confirmed: s.confirmed,
			ends: s.ends, closed: s.closed}
		n.ended.Store(s.ended.Load())
		s.mu.Unlock()
		c.sessions.entries[h] = tableEntry[*realmSession]{value: n, expires: e.expires}
	}
	r.sessions.mu.Unlock()
	return c
}

// newRealmModel registers the model's account, one version of limit L in a
// 2-of-2 set whose other realm is never asked, at a fresh vault over st.
func newRealmModel(t testing.TB, st Store, limit uint) (*realmModelVersion, *modelWorld) {
	clock := newFakeClock()
	opts := Options{Create: true, Now: clock.Now, LoginTTL: 30 * time.Second, SessionTTL: time.Minute}
	v, err := New(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := opts.setDefaults(); err != nil {
		t.Fatal(err)
	}
	w := &modelWorld{store: st, clock: clock, opts: opts, v: v}
	here := &realmtest.Realm{Identity: v.Identity(), UserID: []byte(realmModelUser),
		RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return v.handle(ctx, req), nil }}
	other := newHarness(t, Options{})
	ver, err := realmtest.NewVersion([]*realmtest.Realm{here, other.realm("elsewhere")}, []byte("right"),
		realmtest.VersionOptions{Threshold: 2, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := here.RegisterOpen(context.Background(), ver.Material(1), ver.ID()); err != nil {
		t.Fatal(err)
	}
	return &realmModelVersion{ver: ver, unlockKey: ver.UnlockKeys[0], blinded: randomBlinded(t), identity: v.Identity()}, w
}

func newRealmModelRun(t testing.TB, b realmModelBounds, vv *realmModelVersion, w *modelWorld) *realmModelRun {
	r := &realmModelRun{t: t, b: b, vv: vv, w: w}
	r.slots = make([]realmModelSlot, b.users)
	r.hook()
	r.last = r.committed()
	return r
}

// exploreRealmModel walks every interleaving within b and returns the paths
// to the states it found with nothing left to do, for the replay.
func exploreRealmModel(t *testing.T, b realmModelBounds) (modelStats, [][]realmModelEvent) {
	vv, w := newRealmModel(t, &modelStore{data: map[string][]byte{}}, b.limit)
	root := newRealmModelRun(t, b, vv, w)
	seen := map[string]bool{}
	var (
		st    modelStats
		paths [][]realmModelEvent
	)
	var visit func(r *realmModelRun)
	visit = func(r *realmModelRun) {
		k := r.key()
		if seen[k] {
			return
		}
		seen[k] = true
		st.states++
		events := r.events()
		if len(events) == 0 {
			paths = append(paths, r.trace)
			r.finish()
		}
		for _, e := range events {
			next := r.clone()
			next.apply(e)
			st.edges++
			visit(next)
		}
	}
	visit(root)
	return st, paths
}

// replayRealmModel plays path from scratch on the real record store, with
// the same checks.
func replayRealmModel(t *testing.T, b realmModelBounds, path []realmModelEvent) {
	s := freshRecordStore(t, 9)
	defer s.Close()
	vv, w := newRealmModel(t, s, b.limit)
	r := newRealmModelRun(t, b, vv, w)
	r.probeEvery = true
	for _, e := range path {
		r.apply(e)
	}
	r.finish()
}

// TestRealmCountingModel enumerates the interleavings at one realm for
// limits 1 to 3, with up to four of the user's tickets in flight (a device
// more never takes a behaviour away, so each limit runs with its most), a
// challenge, a reboot and an expiry of tickets, and replays a sample of
// them on the real record store. The evaluations in all, the operator's and
// the user's, are limit + 2 at limits 1 and 2 and limit + 1 at limit 3
// with three devices; COFFER_REALM_MODEL=deep adds limit 3 with limit + 2
// evaluations and two, then four devices (minutes); -short explores a
// smaller space.
func TestRealmCountingModel(t *testing.T) {
	type run struct {
		limit       uint
		users       int
		evaluations int
	}
	runs := []run{{1, 4, 3}, {2, 4, 4}, {3, 3, 4}}
	replays := 5
	switch {
	case os.Getenv("COFFER_REALM_MODEL") == "deep":
		runs = append(runs, run{3, 2, 5}, run{3, 4, 5})
	case testing.Short():
		runs, replays = []run{{1, 2, 3}, {2, 2, 4}}, 2
	}
	for _, c := range runs {
		b := realmModelBounds{limit: c.limit, users: c.users, evaluations: c.evaluations, challenges: 1, reboots: 1, ticketExpiries: 1}
		t.Run(fmt.Sprintf("limit%d/users%d/evaluations%d", c.limit, c.users, c.evaluations), func(t *testing.T) {
			t.Parallel()
			rng := mrand.New(mrand.NewPCG(uint64(c.limit), uint64(c.users*8+c.evaluations)))
			st, paths := exploreRealmModel(t, b)
			for i := 0; i < replays && len(paths) > 0; i++ {
				replayRealmModel(t, b, paths[rng.IntN(len(paths))])
			}
			t.Logf("%d abstract states, %d transitions, %d complete interleavings", st.states, st.edges, len(paths))
		})
	}
}
