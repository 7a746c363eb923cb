package vault

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// The budget tests of REALMS.md 12.2 and 17: an attacker that runs every
// host of a realm set (and, in the second test, holds c < t realms' full
// state) counts the passwords it can test, that is, the candidates p for
// which it obtains F_k(p) and runs the manifest's check on it. The right
// password is never among its candidates, so the only way to raise the
// count is more evaluations than the realms' counters allow.

// budgetPlan is one schedule of requests the attacker tries.
type budgetPlan struct {
	name string
	// order lists the honest realms in the order the attacker asks them
	// for candidate number cand; it falls back along the list when one
	// refuses.
	order func(a *budgetAttack, cand int) []int
	// free is how the attacker gets ticket places back when a realm says
	// busy: 0 uses each ticket up at once with a guessed tag; withheld
	// plans never send an unlock and instead let the tickets expire or
	// restart the realm.
	free budgetFreeing
	// restartEach restarts the realm (store kept) before every evaluation.
	restartEach bool
	// replay drops every evaluation's reply and replays the same request,
	// using the replay's answer.
	replay bool
	// powerCuts cuts the power during one commit in four and retries.
	powerCuts bool
	// reregister registers a version of the attacker's own, under the
	// user's version id, over every tombstone once the realms are locked,
	// and goes on guessing.
	reregister bool
	// exact plans spread their evaluations evenly: they reach the bound.
	exact bool
}

type budgetFreeing int

const (
	freeByWrongTag budgetFreeing = iota
	freeByExpiry
	freeByRestart
)

// budgetAttack is the attacker's state against one realm set.
type budgetAttack struct {
	t       *testing.T
	s       *realmSet
	plan    budgetPlan
	rng     *mrand.Rand
	n, need int            // realms, and honest evaluations per test (t − c)
	shares  map[int][]byte // the compromised realms' shares, by index
	honest  []int
	locked  map[int]bool // as the realms' receipts said
	left    map[int]uint // tries left, as the realms' receipts said
	tickets map[int][]*realmtest.Ticket

	answered int // evaluations honest realms answered (each one counted)
	tested   int // candidates whose F_k(p) the attacker computed
	tried    int // candidates it started on
}

func newBudgetAttack(t *testing.T, s *realmSet, compromised []int, plan budgetPlan, seed uint64) *budgetAttack {
	a := &budgetAttack{t: t, s: s, plan: plan, rng: mrand.New(mrand.NewPCG(seed, 10)), n: len(s.realms),
		shares: map[int][]byte{}, locked: map[int]bool{}, left: map[int]uint{}, tickets: map[int][]*realmtest.Ticket{}}
	a.need = int(s.version.Body.Threshold) - len(compromised)
	for _, i := range compromised {
		// The realm's full state: the share as its committed record holds it.
		rec := s.committedRealm(i)
		sv := rec.held(s.version.ID())
		if sv == nil || len(sv.Share) == 0 || int(sv.Index) != i {
			t.Fatalf("realm %d's record holds no share of the version", i)
		}
		if !bytes.Equal(sv.Share, s.version.Dealing.Shares[i-1]) {
			t.Fatalf("realm %d's record holds another share than the dealing's", i)
		}
		a.shares[i] = bytes.Clone(sv.Share)
	}
	for i := 1; i <= a.n; i++ {
		if a.shares[i] == nil {
			a.honest = append(a.honest, i)
			a.left[i] = s.version.Body.Limit // the manifest says L
		}
	}
	return a
}

// run guesses until fewer than t − c honest realms answer, or until it has
// started on cap candidates (which only a broken counter lets it reach).
func (a *budgetAttack) run(cap int) {
	reregistered := false
	for a.tried < cap {
		if !a.guess(a.tried) {
			if a.plan.reregister && !reregistered {
				reregistered = true
				a.registerOwnVersion()
				continue
			}
			return
		}
	}
}

// guess tries one wrong candidate: t − c honest evaluations of its blinded
// element from distinct realms, the compromised realms' evaluations made
// locally, then the offline test against the manifest's check. It reports
// whether it obtained enough evaluations.
func (a *budgetAttack) guess(cand int) bool {
	a.tried++
	password := fmt.Appendf(nil, "wrong guess %d", cand)
	input := realmkey.Input(a.s.version.SetID, password)
	blind, err := realmkey.NewBlind(input)
	if err != nil {
		a.t.Fatal(err)
	}
	defer blind.Wipe()
	var indices []int
	var evaluated [][]byte
	for _, i := range a.plan.order(a, cand) {
		if len(indices) == a.need {
			break
		}
		if a.locked[i] {
			continue
		}
		if e := a.evaluate(i, blind.Blinded()); e != nil {
			indices, evaluated = append(indices, i), append(evaluated, e)
		}
	}
	if len(indices) < a.need {
		return false // the evaluations it got are wasted
	}
	for i, share := range a.shares {
		e, _, err := realmkey.EvaluateBlinded(share, blind.Blinded())
		if err != nil {
			a.t.Fatal(err)
		}
		indices, evaluated = append(indices, i), append(evaluated, e)
	}
	y, err := blind.Finalize(input, indices, evaluated)
	if err != nil {
		a.t.Fatal(err)
	}
	// The offline test, with the real key schedule (FastStretch for
	// Argon2id). A wrong candidate must fail it.
	if _, ok, err := a.s.version.UnlockKeysFor(y); err != nil || ok {
		a.t.Fatalf("candidate %d passed the manifest's check (err %v)", cand, err)
	}
	// It was a test exactly when y is F_k(candidate): the test knows k.
	want, err := a.s.version.Dealing.Evaluate(input)
	if err != nil {
		a.t.Fatal(err)
	}
	if bytes.Equal(y, want) {
		a.tested++
	}
	return true
}

// evaluate asks honest realm i for one evaluation of blinded and returns
// it, or nil if the realm refused (locked).
func (a *budgetAttack) evaluate(i int, blinded []byte) []byte {
	ctx := context.Background()
	h, r := a.s.vaults[i-1], a.s.realms[i-1]
	for busy := 0; ; busy++ {
		if busy > maxTicketsPerUser+1 {
			a.t.Fatalf("realm %d stays busy", i)
		}
		if a.plan.restartEach {
			h.powerCut()
		}
		if a.plan.powerCuts && a.rng.IntN(4) == 0 {
			h.store.FailCommit = func() error { return memstore.ErrPowerCut }
			e, err := r.Evaluate(ctx, a.s.version.ID(), blinded, nil, 0)
			h.store.FailCommit = nil
			if err == nil && e.Receipt.Kind == protocol.RealmReceiptAttempt {
				a.t.Fatalf("realm %d answered an evaluation whose count did not commit", i)
			}
			// A locked reply commits nothing and may pass.
			if c := protocol.CodeOf(err); err != nil && c != protocol.CodeUnavailable && c != protocol.CodeBusy {
				a.t.Fatalf("realm %d under a power cut: %v", i, err)
			}
			h.powerCut()
		}
		sent, err := r.Seal(protocol.TypeRealmEvaluate, &protocol.RealmEvaluate{VersionID: a.s.version.ID(), Blinded: blinded})
		if err != nil {
			a.t.Fatal(err)
		}
		var reply protocol.RealmEvaluateReply
		err = r.Deliver(ctx, sent, &reply)
		if err == nil && a.plan.replay {
			// The first reply is dropped; its ticket is the attacker's.
			if len(reply.Handle) != 0 {
				a.answered++
				a.tickets[i] = append(a.tickets[i], &realmtest.Ticket{Handle: reply.Handle, Nonce: reply.TicketNonce})
			}
			reply = protocol.RealmEvaluateReply{}
			err = r.Deliver(ctx, sent, &reply)
		}
		if protocol.CodeOf(err) == protocol.CodeBusy {
			a.freeTickets(i)
			continue
		}
		if err != nil {
			a.t.Fatalf("evaluation at realm %d: %v", i, err)
		}
		rc, err := r.Verify(&reply.Receipt, sent.Secret.RequestHash, sent.ClientNonce, protocol.RealmReceiptAttempt, protocol.RealmReceiptLocked)
		if err != nil {
			a.t.Fatal(err)
		}
		a.left[i] = rc.TriesLeft
		if rc.Kind == protocol.RealmReceiptLocked {
			a.locked[i] = true
			return nil
		}
		a.answered++
		tk := &realmtest.Ticket{Handle: reply.Handle, Nonce: reply.TicketNonce}
		a.tickets[i] = append(a.tickets[i], tk)
		if a.plan.free == freeByWrongTag {
			a.freeTickets(i)
		}
		return reply.Evaluated
	}
}

// freeTickets gives realm i's ticket places back the plan's way. The
// attacker has no unlock key, so a tag it sends is a guess.
func (a *budgetAttack) freeTickets(i int) {
	h := a.s.vaults[i-1]
	switch a.plan.free {
	case freeByWrongTag:
		for _, tk := range a.tickets[i] {
			_, err := a.s.realms[i-1].Unlock(context.Background(), tk, newBackupKey(a.t))
			if c := protocol.CodeOf(err); c != protocol.CodeAuthentication && c != protocol.CodeUnknownHandle {
				a.t.Fatalf("a guessed tag at realm %d: %v", i, err)
			}
		}
	case freeByExpiry:
		h.clock.Advance(h.v.opts.LoginTTL + time.Second)
	case freeByRestart:
		h.powerCut()
	}
	a.tickets[i] = nil
}

// registerOwnVersion registers, over every honest realm's tombstone, a
// version the attacker dealt itself under the user's version id: open
// registration (N7, N8) lets it, and its evaluations are then of the
// attacker's key, not the user's.
func (a *budgetAttack) registerOwnVersion() {
	ctx := context.Background()
	own, err := realmtest.NewVersion(a.s.realms, []byte("the attacker's"), realmtest.VersionOptions{
		Threshold: int(a.s.version.Body.Threshold), Limit: a.s.version.Body.Limit,
		SetID: a.s.version.SetID, VersionID: a.s.version.ID()})
	if err != nil {
		a.t.Fatal(err)
	}
	for _, i := range a.honest {
		if !a.locked[i] {
			continue
		}
		if _, err := a.s.realms[i-1].RegisterOpen(ctx, own.Material(i), own.ID()); err != nil {
			a.t.Fatalf("registering over realm %d's tombstone: %v", i, err)
		}
		a.locked[i], a.left[i] = false, own.Body.Limit
		a.tickets[i] = nil
	}
}

// checkCounted probes every honest realm as the user's device would and
// checks that the signed receipts account for every evaluation the attacker
// obtained, and (before any re-registration) show all of them as failed.
func (a *budgetAttack) checkCounted() (attempts, left uint64) {
	a.t.Helper()
	var failed uint64
	for _, i := range a.honest {
		rc, err := a.s.realms[i-1].Probe(context.Background())
		if err != nil {
			a.t.Fatalf("probe at realm %d: %v", i, err)
		}
		attempts += uint64(rc.AttemptsTotal)
		failed += uint64(rc.FailedSinceSuccess)
		left += uint64(rc.TriesLeft)
		if c := a.s.committedRealm(i); c == nil || c.Attempts != uint64(rc.AttemptsTotal) {
			a.t.Fatalf("realm %d's receipt shows %d attempts, its record another number", i, uint64(rc.AttemptsTotal))
		}
	}
	if attempts != uint64(a.answered) {
		a.t.Fatalf("the realms' receipts show %d attempts; the attacker obtained %d evaluations", attempts, a.answered)
	}
	if !a.plan.reregister && failed != attempts {
		a.t.Fatalf("the receipts show %d failed since success of %d attempts: some evaluation was released", failed, attempts)
	}
	if a.answered < a.need*a.tested {
		a.t.Fatalf("%d tests from %d evaluations, %d each", a.tested, a.answered, a.need)
	}
	return attempts, left
}

// Orders of the honest realms.

// evenOrder spreads candidates cyclically: candidate j starts at honest
// realm j·(t − c) mod (n − c), so every realm is asked ⌊⌋ or ⌈⌉ of the
// evaluations, which achieves the bound.
func evenOrder(a *budgetAttack, cand int) []int {
	h := len(a.honest)
	var out []int
	for m := range h {
		out = append(out, a.honest[(cand*a.need+m)%h])
	}
	return out
}

// mostLeftFirst is the greedy allocation: the realms whose receipts showed
// the most tries left first.
func mostLeftFirst(a *budgetAttack, _ int) []int {
	out := slices.Clone(a.honest)
	slices.SortStableFunc(out, func(x, y int) int { return int(a.left[y]) - int(a.left[x]) })
	return out
}

// firstComeOrder always asks the lowest-numbered realms that still answer.
func firstComeOrder(a *budgetAttack, _ int) []int { return slices.Clone(a.honest) }

// randomOrder asks the honest realms in a random order.
func randomOrder(a *budgetAttack, _ int) []int {
	out := slices.Clone(a.honest)
	a.rng.Shuffle(len(out), func(x, y int) { out[x], out[y] = out[y], out[x] })
	return out
}

func budgetPlans() []budgetPlan {
	return []budgetPlan{
		{name: "even", order: evenOrder, exact: true},
		{name: "greedy (most tries left first)", order: mostLeftFirst},
		{name: "first come", order: firstComeOrder},
		{name: "random, unlocks withheld until the tickets expire", order: randomOrder, free: freeByExpiry},
		{name: "random, unlocks withheld, restarts to free tickets", order: randomOrder, free: freeByRestart},
		{name: "even, a restart before every evaluation", order: evenOrder, free: freeByRestart, restartEach: true},
		{name: "even, every reply dropped and the request replayed", order: evenOrder, replay: true},
		{name: "random, power cuts at commits", order: randomOrder, powerCuts: true},
		{name: "even, then its own version over the tombstones", order: evenOrder, reregister: true},
	}
}

// attackBudget runs plan against a fresh t-of-n set with limit L and the
// compromised realms, logs the passwords tested, and checks them against
// the bound and the receipts against the evaluations.
func attackBudget(t *testing.T, n, threshold int, limit uint, compromised []int, plan budgetPlan, seed uint64) {
	s := newRealmSet(t, n, threshold, "the user's password", limit)
	// The offline test is a real one: the right password's F_k passes it.
	right, err := s.version.Dealing.Evaluate(realmkey.Input(s.version.SetID, s.version.Password))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.version.UnlockKeysFor(right); err != nil || !ok {
		t.Fatalf("the right password fails the manifest's check: %v", err)
	}
	a := newBudgetAttack(t, s, compromised, plan, seed)
	// No counter that works lets it start on more than every honest
	// evaluation tested alone (and a broken one is stopped here).
	a.run(len(a.honest)*int(limit)*2 + 2)

	c := len(compromised)
	bound := (n - c) * int(limit) / (threshold - c)
	name := fmt.Sprintf("%d of %d, L=%d, c=%d %v, %s", threshold, n, limit, c, compromised, plan.name)
	t.Logf("%s: %d passwords tested (bound %d) with %d evaluations", name, a.tested, bound, a.answered)
	if a.tested > bound {
		t.Fatalf("%s: %d passwords tested, bound %d", name, a.tested, bound)
	}
	if plan.exact && a.tested != bound {
		t.Fatalf("%s: %d passwords tested, the even spread reaches %d", name, a.tested, bound)
	}
	_, left := a.checkCounted()
	// The even spread stops with fewer tries left over all honest realms
	// than one more test needs: it used every evaluation it could.
	if plan.exact && left >= uint64(a.need) {
		t.Fatalf("%s: stopped with %d tries left at the honest realms, %d per test", name, left, a.need)
	}
}

// Theorem 1 (REALMS.md 12.2): an attacker that runs every host and holds
// the manifest, and no realm, tests at most ⌊n·L/t⌋ passwords, and the
// even spread reaches that; every evaluation it used is on the receipts.
func TestRealmGuessBoundHostsOnly(t *testing.T) {
	for _, set := range []struct{ n, t int }{{3, 2}, {5, 3}} {
		for _, limit := range []uint{1, 2, 5} {
			for p, plan := range budgetPlans() {
				attackBudget(t, set.n, set.t, limit, nil, plan, uint64(p))
			}
		}
	}
}

// Theorem 2 (REALMS.md 12.2): with c ≤ t − 1 realms' full state as well
// (their shares, evaluated freely), ⌊(n−c)·L/(t−c)⌋ and no more.
func TestRealmGuessBoundWithCompromisedRealms(t *testing.T) {
	plans := []budgetPlan{
		{name: "even", order: evenOrder, exact: true},
		{name: "greedy (most tries left first)", order: mostLeftFirst},
		{name: "random, unlocks withheld, restarts to free tickets", order: randomOrder, free: freeByRestart},
	}
	for _, set := range []struct {
		n, t   int
		limits []uint
	}{{3, 2, []uint{2, 5}}, {5, 3, []uint{2, 3}}, {8, 5, []uint{2}}} {
		for _, limit := range set.limits {
			for c := 0; c < set.t; c++ {
				for p, plan := range plans {
					// Which realms are compromised should not matter: the
					// last c for the even spread, random ones otherwise.
					rng := mrand.New(mrand.NewPCG(uint64(c), uint64(p)))
					compromised := rng.Perm(set.n)[:c]
					for k := range compromised {
						compromised[k]++
					}
					if plan.exact {
						compromised = compromised[:0]
						for i := set.n - c + 1; i <= set.n; i++ {
							compromised = append(compromised, i)
						}
					}
					attackBudget(t, set.n, set.t, limit, compromised, plan, uint64(p))
				}
			}
		}
	}
}
