package vault

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// operatorGuesses plays an operator who sends n logins with wrong passwords
// for user and returns how many of them the vault evaluated on the user's
// real record (an attempt receipt; a locked receipt means a fake KE2).
func operatorGuesses(t testing.TB, h *harness, user string, n int) (evaluated int) {
	t.Helper()
	c := h.client(user)
	for i := 0; i < n; i++ {
		_, r, err := c.Login(context.Background(), []byte("operator guess"))
		if !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatalf("operator guess %d: %v", i, err)
		}
		if r.Kind == protocol.ReceiptAttempt {
			evaluated++
		}
	}
	return evaluated
}

// The withheld-KE3 attack: the operator relays the user's KE1, keeps the
// user's KE3, burns the record to its tombstone with its own guesses, then
// delivers the kept KE3. On the old rules that KE3 wrote the user's RAM copy
// back with a zero counter and the operator had limit more guesses, none of
// them shown to the user.
func TestAWithheldKE3CannotReviveABurnedRecord(t *testing.T) {
	const limit = 3
	h := newHarness(t, Options{})
	register(t, h.client("wes"), "right", limit)
	finish, _, err := loginPending(t, h, "wes", "right")
	if err != nil {
		t.Fatal(err)
	}
	guesses := operatorGuesses(t, h, "wes", limit)
	if _, err := finish(); err == nil {
		t.Error("a KE3 kept while the record was burned released the key")
	}
	guesses += operatorGuesses(t, h, "wes", 2*limit)
	if guesses > limit {
		t.Fatalf("the operator had %d guesses evaluated on the real record without a success the user saw, limit %d", guesses, limit)
	}
}

// The dropped-reply attack: the operator delivers the user's KE3 but drops
// the vault's sealed reply, so the user never sees the success. That login
// must not count as a success: it resets nothing, and the operator's guesses
// before and after it add up to at most limit.
func TestAReleaseTheUserNeverSawIsNotASuccess(t *testing.T) {
	const limit = 3
	h := newHarness(t, Options{})
	register(t, h.client("xia"), "right", limit)
	guesses := operatorGuesses(t, h, "xia", limit-1)
	finish, _, err := loginPending(t, h, "xia", "right")
	if err != nil {
		t.Fatal(err)
	}
	finish() // delivered; the reply is dropped, so the client never confirms
	guesses += operatorGuesses(t, h, "xia", 2*limit)
	if guesses > limit {
		t.Fatalf("the operator had %d guesses evaluated on the real record without a success the user saw, limit %d", guesses, limit)
	}
}

// A counted attempt is never answered busy: the pending-login slot is
// reserved before the attempt is counted. Two KE1s race for the last slot
// while the first one's commit is held; on the old code both passed the
// room check, both were counted and the second was answered busy.
func TestACountedAttemptIsNeverAnsweredBusy(t *testing.T) {
	h := newHarness(t, Options{MaxPendingLogins: 1})
	register(t, h.client("kim"), "right", 5)
	puts := &putSignals{testStore: h.store, staged: make(chan struct{})}
	v, err := New(context.Background(), puts, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.v = v
	gate, entered := make(chan struct{}), make(chan struct{}, 4)
	h.store.FailCommit = func() error {
		entered <- struct{}{}
		<-gate
		return nil
	}
	results := make(chan startResult, 2)
	go func() { r, err := loginStart(t, h.v, "kim"); results <- startResult{r, err} }()
	<-entered // the first attempt is staged and its commit is held
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := loginStart(t, h.v, "kim")
		results <- startResult{r, err}
	}()
	// Let the second request run as far as it can while the commit is held:
	// until it has staged its count or has been answered.
	select {
	case <-puts.staged:
	case r := <-results:
		results <- r
	case <-time.After(10 * time.Second):
		t.Fatal("the second KE1 neither staged nor answered")
	}
	close(gate)
	wg.Wait()
	counted, busy := 0, 0
	for i := 0; i < 2; i++ {
		r := <-results
		var pe *protocol.Error
		switch {
		case r.err == nil:
			counted++
		case errors.As(r.err, &pe) && pe.Code == protocol.CodeBusy:
			busy++
		default:
			t.Fatal(r.err)
		}
	}
	h.store.FailCommit = nil
	if c := h.committedRecord("kim"); c.Attempts != uint64(counted) {
		t.Fatalf("%d attempts answered with a KE2 and %d busy, but %d counted: a busy reply hid a counted guess", counted, busy, c.Attempts)
	}
}

// putSignals is a store that reports, after the first, every Put.
type putSignals struct {
	*testStore
	mu     sync.Mutex
	n      int
	staged chan struct{}
}

func (p *putSignals) Put(id, rec []byte) error {
	err := p.testStore.Put(id, rec)
	p.mu.Lock()
	p.n++
	if p.n == 2 {
		close(p.staged)
	}
	p.mu.Unlock()
	return err
}

type startResult struct {
	reply *protocol.LoginStartReply
	err   error
}

func sleepBriefly() { time.Sleep(time.Millisecond) }

// While the login whose guess reached the limit is unresolved, the record
// can still come back: a locked receipt says for how long, and a client
// must not say the key is gone. Once that login fails, it is gone.
func TestALockedReceiptSaysHowLongTheRecordCanComeBack(t *testing.T) {
	const limit = 2
	h := newHarness(t, Options{LoginTTL: 30 * time.Second})
	c := h.client("yan")
	key := register(t, c, "right", limit)
	operatorGuesses(t, h, "yan", 1)
	finish, start, err := loginPending(t, h, "yan", "right") // the final attempt, by the user
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := start.Receipt.Verify(h.v.Identity().SigningKey); r.Kind != protocol.ReceiptAttempt || r.TriesLeft != 0 {
		t.Fatalf("final attempt receipt %+v", r)
	}
	h.clock.Advance(10 * time.Second)
	_, locked, _ := c.Login(context.Background(), []byte("anything"))
	if locked.Kind != protocol.ReceiptLocked || locked.RevivableMillis != 20_000 {
		t.Fatalf("locked receipt while the final login is pending: %+v, want revivable for 20 s", locked)
	}
	released, err := finish()
	if err != nil {
		t.Fatalf("the final login's right password: %v", err)
	}
	if released.TriesLeft != limit || released.FailedSinceSuccess != 1 {
		t.Fatalf("release receipt %+v", released)
	}
	s := mustLogin(t, c, "right", key) // the revived record had one try left
	mustConfirm(t, s, key)

	// Now burn it with a final attempt that fails.
	operatorGuesses(t, h, "yan", limit)
	_, locked, _ = c.Login(context.Background(), []byte("anything"))
	if locked.Kind != protocol.ReceiptLocked || locked.RevivableMillis != 0 {
		t.Fatalf("locked receipt after the final login failed: %+v, want gone for ever", locked)
	}
}

// A reboot forgets the final login, and with it the record's secrets: the
// locked receipt then says the key is gone.
func TestARebootEndsTheRevivalWindow(t *testing.T) {
	h := newHarness(t, Options{})
	register(t, h.client("zed"), "right", 1)
	finish, _, err := loginPending(t, h, "zed", "right")
	if err != nil {
		t.Fatal(err)
	}
	h.boot()
	if _, err := finish(); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
		t.Fatalf("final KE3 after a reboot: %v", err)
	}
	_, locked, _ := h.client("zed").Login(context.Background(), []byte("right"))
	if locked.Kind != protocol.ReceiptLocked || locked.RevivableMillis != 0 {
		t.Fatalf("locked receipt after a reboot: %+v", locked)
	}
}

// The confirmation is the session's first command's and only its; it must
// name the receipt the login released; it counts one success, once.
func TestTheConfirmationRules(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("ava")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	send := func(cmd *protocol.SessionCommand, seq uint64) error {
		sealed, err := s.SealedRequestAsIs(cmd, seq)
		if err != nil {
			t.Fatal(err)
		}
		return decodeSession(t, h.v, sealed)
	}
	release := protocol.SessionCommand{Command: protocol.CommandRelease}
	wantCode(t, send(&release, 1), protocol.CodeSequence) // no confirmation
	wrong := release
	wrong.Confirm = make([]byte, protocol.HashSize)
	wantCode(t, send(&wrong, 2), protocol.CodeAuthentication) // another receipt
	if r := h.committedRecord("ava"); r.Successes != 0 || r.counter() != 1 {
		t.Fatalf("refused confirmations changed the record: %+v", r)
	}
	right := release
	right.Confirm = protocol.ReceiptHash(s.ReleaseReceipt())
	if err := send(&right, 3); err != nil {
		t.Fatal(err)
	}
	if r := h.committedRecord("ava"); r.Successes != 1 || r.counter() != 0 {
		t.Fatalf("record after the confirmation: %+v", r)
	}
	wantCode(t, send(&wrong, 4), protocol.CodeAuthentication) // a later one naming another receipt
	if err := send(&release, 5); err != nil {
		t.Fatal(err)
	}
	if r := h.committedRecord("ava"); r.Successes != 1 {
		t.Fatalf("one login counted %d successes", r.Successes)
	}
}

// Replies for a real user, an unknown one and a locked one have one size
// even when the vault's maximum limit needs a longer integer than the
// record's (24 and over, in CBOR).
func TestLoginRepliesHaveOneSizeWhateverTheLimits(t *testing.T) {
	h := newHarness(t, Options{MaxLimit: 30})
	register(t, h.client("ivan"), "right", 3)
	register(t, h.client("judy"), "right", 1)
	h.client("judy").Login(context.Background(), []byte("wrong"))
	size := func(user string) int {
		req, _ := loginStartRequest(t, user)
		return len(h.v.handle(context.Background(), req))
	}
	real, unknown, locked := size("ivan"), size("mary"), size("judy")
	if real != unknown || real != locked {
		t.Fatalf("reply sizes with max_limit 30: real %d, unknown %d, locked %d", real, unknown, locked)
	}
}

func TestUnknownUsersGetStableFakeTotals(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("nobody")
	var first *protocol.Receipt
	for i := 0; i < 3; i++ {
		_, r, _ := c.Login(context.Background(), []byte("x"))
		if first == nil {
			first = r
		}
		if r.AttemptsTotal != first.AttemptsTotal || r.SuccessesTotal != first.SuccessesTotal || r.AttemptsTotal <= r.SuccessesTotal {
			t.Fatalf("unknown user's totals %d/%d, first %d/%d", r.AttemptsTotal, r.SuccessesTotal, first.AttemptsTotal, first.SuccessesTotal)
		}
	}
}

// A command that outlives its session's lifetime while it waits for a
// commit must not deadlock with the expiry that wipes the session.
func TestACommandOutlivingItsSessionDoesNotDeadlock(t *testing.T) {
	h := newHarness(t, Options{SessionTTL: time.Second})
	c := h.client("bea")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	mustConfirm(t, s, key)
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	h.store.FailCommit = func() error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
		return nil
	}
	done := make(chan error, 2)
	go func() { _, err := s.Delete(context.Background()); done <- err }()
	<-entered // the delete holds the session and waits for its commit
	h.clock.Advance(time.Minute)
	go func() { h.v.Expire(); done <- nil }()
	time.Sleep(50 * time.Millisecond) // let the expiry reach the session
	close(gate)
	for i := 0; i < 2; i++ {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("deadlock: a command that outlived its session and the expiry wait for each other")
		}
	}
}

// Junk under a session's handle (which the host sees in clear) must not
// keep the session alive: only a command that opens does.
func TestUnauthenticatedJunkDoesNotKeepASessionAlive(t *testing.T) {
	h := newHarness(t, Options{SessionTTL: 2 * time.Minute})
	c := h.client("ida")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	junk, _ := protocol.Encode(protocol.TypeSession, &protocol.Session{Handle: s.Handle(), Seq: 999, Sealed: make([]byte, 40)})
	for i := 0; i < 10; i++ {
		h.clock.Advance(time.Minute)
		decodeSession(t, h.v, junk)
	}
	if _, _, err := s.Release(context.Background()); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
		t.Fatalf("a session idle for 10 minutes under junk still answered: %v", err)
	}
}

// A session also ends after its whole lifetime, however busy.
func TestASessionHasAnEnd(t *testing.T) {
	h := newHarness(t, Options{SessionTTL: 2 * time.Minute, SessionLifetime: 10 * time.Minute})
	c := h.client("jon")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	for i := 0; i < 7; i++ { // busy every 90 s, for 10.5 minutes
		if _, _, err := s.Release(context.Background()); err != nil {
			t.Fatalf("after %v: %v", time.Duration(i)*90*time.Second, err)
		}
		h.clock.Advance(90 * time.Second)
	}
	if _, _, err := s.Release(context.Background()); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
		t.Fatalf("a session past its lifetime answered: %v", err)
	}
}

// A KE3 is refused busy only before anything durable happens: with the
// sessions table full, the final login's right KE3 is answered busy and
// leaves the record and the login as they were, so that it can be sent
// again. It used to commit the revival first and then answer busy.
func TestAFullSessionTableRefusesAKE3BeforeTheRevival(t *testing.T) {
	h := newHarness(t, Options{MaxSessions: 1})
	c := h.client("kai")
	key := register(t, c, "right", 2)
	other := mustLogin(t, c, "right", key) // holds the only session
	mustConfirm(t, other, key)
	operatorGuesses(t, h, "kai", 1)
	finish, _, err := loginPending(t, h, "kai", "right") // the final attempt
	if err != nil {
		t.Fatal(err)
	}
	before := h.committedRecord("kai")
	_, err = finish()
	wantCode(t, err, protocol.CodeBusy)
	if after := h.committedRecord("kai"); after.State != before.State || after.Watermark != before.Watermark {
		t.Fatalf("a KE3 answered busy changed the record: %+v, was %+v", after, before)
	}
	if err := other.Confirm(context.Background()); err != nil { // closes it: frees the place
		t.Fatal(err)
	}
	if _, err := finish(); err != nil {
		t.Fatalf("the same KE3, sent again: %v", err)
	}
}

// A confirmation is retried until a command is answered: when the reply to
// the first command is lost, the next command carries it again and works.
func TestARetriedConfirmationIsANoOp(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("lea")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	confirm := protocol.ReceiptHash(s.ReleaseReceipt())
	release := protocol.SessionCommand{Command: protocol.CommandRelease, Confirm: confirm}
	first, _ := s.SealedRequestAsIs(&release, 1)
	h.v.handle(context.Background(), first) // its reply is lost
	again, _ := s.SealedRequestAsIs(&release, 2)
	if err := decodeSession(t, h.v, again); err != nil {
		t.Fatalf("the retried confirmation: %v", err)
	}
	if r := h.committedRecord("lea"); r.Successes != 1 {
		t.Fatalf("one login counted %d successes", r.Successes)
	}
}

// A confirmation whose commit fails is not counted twice when retried.
func TestAConfirmationWhoseCommitFailedCountsOnce(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("max")
	key := register(t, c, "right", 5)
	s := mustLogin(t, c, "right", key)
	confirm := protocol.ReceiptHash(s.ReleaseReceipt())
	release := protocol.SessionCommand{Command: protocol.CommandRelease, Confirm: confirm}
	fail := true
	h.store.FailCommit = func() error {
		if fail {
			fail = false
			return errors.New("the flush failed")
		}
		return nil
	}
	first, _ := s.SealedRequestAsIs(&release, 1)
	wantCode(t, decodeSession(t, h.v, first), protocol.CodeUnavailable)
	again, _ := s.SealedRequestAsIs(&release, 2)
	if err := decodeSession(t, h.v, again); err != nil {
		t.Fatalf("the retried confirmation: %v", err)
	}
	if r := h.committedRecord("max"); r.Successes != 1 {
		t.Fatalf("one login counted %d successes", r.Successes)
	}
}
