package soak

import (
	"bytes"
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// clientKind says how an account is driven.
type clientKind int

const (
	ordinary clientKind = iota // testclient, the usual mix of operations
	lockout                    // testclient, wrong guesses until the key is erased, then again
	product                    // the product client library, real uncached Argon2id
)

func (k clientKind) String() string { return [...]string{"ordinary", "lockout", "product"}[k] }

// loginTTL is the vault's default time between KE2 and KE3 (vault.Options),
// which is also how long a final login may revive its record.
const loginTTL = 30 * time.Second

// account is one cofferd account and the driver's model of its vault
// record (SPEC.md, "Counting"). One client drives each account, one
// operation at a time, so the model predicts every receipt exactly: any
// difference is a failure. A reply lost in transit makes the model
// uncertain by what that request may have done, until the next receipt
// settles it (and the loss is itself a failure, since nothing is killed
// during a run).
type account struct {
	name     string
	userID   []byte
	token    string
	kind     clientKind
	password []byte
	wrong    []byte
	fails    *failures
	signing  ed25519.PublicKey

	mu         sync.Mutex
	gen        uint64 // the registration the model follows; 0 before the first
	limit      uint
	attempts   uint64 // attempts_total as the model has it
	successes  uint64
	watermark  uint64
	lostKE1    uint64 // login starts whose reply was lost: counted or not
	lostConf   uint64 // confirmations whose reply was lost: counted or not
	wmUnknown  bool   // a lost confirmation may have moved the watermark
	highestSeq uint64 // store_sequence never goes backwards for one client
	pending    map[string]uint64
	final      string    // the handle of the final login while unresolved
	finalUntil time.Time // when the vault forgets it at the latest
	erased     bool      // the tombstone's final login failed: the key is gone
	release    *expectRelease

	// Accounting of the current registration, from the driver's side only.
	genAnswered, genLost, genConfirmed, genLostConf uint64
	// For the report, over the whole run.
	answered, lost, confirmed, lostConfirms, lockedSeen, registrations uint64
	// atStart is the accounting as of the last login-start receipt.
	atStart tally
}

// expectRelease is what the release receipt of a login must say, fixed
// when its KE3 was answered.
type expectRelease struct {
	attempts, failed uint64
	triesLeft        uint
	known            bool
}

func (a *account) failf(class, format string, args ...any) {
	a.fails.add(class, a.name, format, args...)
}

// counter is attempts − watermark, the attempts held against the user.
func (a *account) counter() uint64 { return a.attempts - a.watermark }

// lockedNow reports whether the model's record is locked (a tombstone).
func (a *account) lockedNow() bool { return a.gen != 0 && a.counter() >= uint64(a.limit) }

// triesLeft is what the model says is left; false when unknown.
func (a *account) triesLeft() (uint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wmUnknown || a.lostKE1 > 0 || a.gen == 0 {
		return 0, false
	}
	if c := a.counter(); c < uint64(a.limit) {
		return a.limit - uint(c), true
	}
	return 0, true
}

// erasedNow reports whether the model has the key erased for good.
func (a *account) erasedNow() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.erased
}

// needsRegistration reports whether the account has no key to log in to.
func (a *account) needsRegistration() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen == 0 || a.erased
}

func (a *account) sequence(class string, seq uint64) {
	if seq < a.highestSeq {
		a.failf("store-sequence-backwards", "%s receipt at store sequence %d after %d", class, seq, a.highestSeq)
		return
	}
	a.highestSeq = seq
}

// registered starts the model afresh on a new registration (registered or
// changed receipt, which the client has verified).
func (a *account) registered(r *protocol.Receipt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sequence("registration", r.StoreSequence)
	if r.AttemptsTotal != 0 || r.SuccessesTotal != 0 || r.TriesLeft != r.Limit {
		a.failf("registration-receipt", "totals %d/%d, tries left %d of %d", r.AttemptsTotal, r.SuccessesTotal, r.TriesLeft, r.Limit)
	}
	a.gen, a.limit = r.Generation, r.Limit
	a.attempts, a.successes, a.watermark, a.lostKE1, a.lostConf, a.wmUnknown = 0, 0, 0, 0, 0, false
	a.pending, a.final, a.erased, a.release = map[string]uint64{}, "", false, nil
	a.genAnswered, a.genLost, a.genConfirmed, a.genLostConf = 0, 0, 0, 0
	a.registrations++
}

// settle checks a total the vault signed against the model's value and
// the replies lost since, and takes the vault's value.
func (a *account) settle(what string, model *uint64, lost *uint64, got uint64) {
	if got < *model || got > *model+*lost {
		a.failf("total-mismatch", "%s: the vault says %d, the driver counted %d (+%d lost)", what, got, *model, *lost)
		// Follow the vault from here, so that one difference is reported
		// once; the next release receipt resynchronises the watermark.
		a.wmUnknown = true
	}
	*model, *lost = got, 0
	a.watermark = min(a.watermark, a.attempts)
}

// loginStarted sees a login-start reply: the attempt or locked receipt,
// already decoded and verified by the caller, and the handle.
func (a *account) loginStarted(ke1 []byte, handle []byte, r *protocol.Receipt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() { a.atStart = a.tallyLocked(r) }()
	if !bytes.Equal(r.RequestHash, protocol.RequestHash(ke1)) {
		a.failf("receipt-request-hash", "a login-start receipt for another KE1")
	}
	a.sequence("login-start", r.StoreSequence)
	if r.Generation != a.gen || r.Limit != a.limit {
		a.failf("receipt-generation", "generation %x limit %d, the model has %x limit %d", r.Generation, r.Limit, a.gen, a.limit)
	}
	locked := a.lockedNow()
	switch r.Kind {
	case protocol.ReceiptAttempt:
		if locked && a.lostKE1 == 0 {
			a.failf("counted-while-locked", "an attempt receipt on a record the model has locked")
		}
		a.attempts++
		a.answered++
		a.genAnswered++
		a.settle("attempts_total", &a.attempts, &a.lostKE1, uint64(r.AttemptsTotal))
		a.settle("successes_total", &a.successes, &a.lostConf, uint64(r.SuccessesTotal))
		if !a.wmUnknown {
			c := a.counter()
			if r.FailedSinceSuccess != uint(c-1) || r.TriesLeft != a.limit-min(a.limit, uint(c)) {
				a.failf("attempt-receipt", "failed since success %d, tries left %d; the model has %d, %d",
					r.FailedSinceSuccess, r.TriesLeft, c-1, a.limit-min(a.limit, uint(c)))
			}
		}
		a.pending[string(handle)] = a.attempts
		if a.lockedNow() && !a.wmUnknown {
			a.final, a.finalUntil = string(handle), time.Now().Add(loginTTL)
		}
	case protocol.ReceiptLocked:
		a.lockedSeen++
		if !locked && !a.wmUnknown && a.lostKE1 == 0 {
			a.failf("locked-while-live", "a locked receipt on a record the model has live (counter %d of %d)", a.counter(), a.limit)
		}
		a.settle("attempts_total", &a.attempts, &a.lostKE1, uint64(r.AttemptsTotal))
		a.settle("successes_total", &a.successes, &a.lostConf, uint64(r.SuccessesTotal))
		if r.TriesLeft != 0 || (!a.wmUnknown && r.FailedSinceSuccess != uint(a.counter())) {
			a.failf("locked-receipt", "tries left %d, failed since success %d; the model has counter %d", r.TriesLeft, r.FailedSinceSuccess, a.counter())
		}
		revivable := r.RevivableMillis > 0
		if a.final != "" && !time.Now().Before(a.finalUntil) {
			a.final = ""
			a.erased = true // expired unresolved: the vault forgot the secrets
		}
		switch {
		case revivable && a.final == "":
			a.failf("locked-receipt", "revivable for %d ms with no final login pending", r.RevivableMillis)
		case !revivable && a.final != "" && time.Until(a.finalUntil) > 2*time.Second:
			a.failf("locked-receipt", "not revivable while the final login is pending")
		}
	default:
		a.failf("receipt-kind", "a login-start receipt of kind %d", r.Kind)
	}
}

// loginStartLost: a login start whose reply never came (not an explicit
// refusal): the vault may or may not have counted it.
func (a *account) loginStartLost() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lostKE1++
	a.lost++
	a.genLost++
}

// loginFinished sees the reply to a KE3: released (ok), refused with code,
// or never delivered (code 0, !ok).
func (a *account) loginFinished(handle []byte, ok bool, code protocol.Code) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := string(handle)
	idx, known := a.pending[h]
	delete(a.pending, h)
	isFinal := a.final != "" && a.final == h
	switch {
	case ok:
		e := &expectRelease{attempts: a.attempts, known: known && !a.wmUnknown && a.lostKE1 == 0}
		if e.known {
			e.failed = a.counter() - 1
			e.triesLeft = a.limit - min(a.limit, uint(a.attempts-max(a.watermark, idx)))
		}
		a.release = e
		if isFinal {
			a.watermark++ // the revival: one try left
		}
		if known {
			a.pending[h] = idx // now a session awaiting its confirmation
		}
	case code == protocol.CodeAuthentication && isFinal:
		a.erased = true // the final login failed: the secrets are gone
	}
	if isFinal && (ok || code != 0) {
		a.final = ""
	}
}

// checkReleased compares the release receipt of the last login with what
// the model fixed when its KE3 was answered.
func (a *account) checkReleased(r *protocol.Receipt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sequence("released", r.StoreSequence)
	e := a.release
	a.release = nil
	if e == nil {
		a.failf("release-unexpected", "a release receipt the driver did not see the KE3 of")
		return
	}
	if r.Generation != a.gen || uint64(r.AttemptsTotal) != e.attempts {
		a.failf("release-receipt", "generation %x attempts %d; the model has %x, %d", r.Generation, r.AttemptsTotal, a.gen, e.attempts)
	}
	if !e.known {
		// Resynchronise on what the vault says: one lost confirmation
		// left the watermark and the successes open.
		a.settle("successes_total", &a.successes, &a.lostConf, uint64(r.SuccessesTotal))
		a.watermark = a.attempts - min(a.attempts, 1+uint64(r.FailedSinceSuccess))
		a.wmUnknown = false
		return
	}
	a.settle("successes_total", &a.successes, &a.lostConf, uint64(r.SuccessesTotal))
	if uint64(r.FailedSinceSuccess) != e.failed || r.TriesLeft != e.triesLeft {
		a.failf("release-receipt", "failed since success %d, tries left %d; the model has %d, %d", r.FailedSinceSuccess, r.TriesLeft, e.failed, e.triesLeft)
	}
}

// checkCurrent compares a receipt that describes the record as it stands
// (a release command's) with the model.
func (a *account) checkCurrent(r *protocol.Receipt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sequence("release command", r.StoreSequence)
	if r.Generation != a.gen || uint64(r.AttemptsTotal) != a.attempts || uint64(r.SuccessesTotal) != a.successes {
		a.failf("release-receipt", "generation %x totals %d/%d; the model has %x, %d/%d", r.Generation, r.AttemptsTotal, r.SuccessesTotal, a.gen, a.attempts, a.successes)
	}
	if !a.wmUnknown && (uint64(r.FailedSinceSuccess) != a.counter() || r.TriesLeft != a.limit-min(a.limit, uint(a.counter()))) {
		a.failf("release-receipt", "failed since success %d, tries left %d; the model has counter %d", r.FailedSinceSuccess, r.TriesLeft, a.counter())
	}
}

// confirmation sees the reply to a session's first command, which carries
// the login's confirmation: answered (the vault counted the success),
// lost (it may have), or refused before it was sent (nothing happened).
func (a *account) confirmation(handle []byte, answered, lost bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := string(handle)
	idx, known := a.pending[h]
	delete(a.pending, h)
	switch {
	case answered && known:
		a.successes++
		a.confirmed++
		a.genConfirmed++
		a.watermark = max(a.watermark, idx)
	case answered:
		a.failf("confirm-unexpected", "a confirmation for a login the driver did not see")
	case lost:
		a.lostConf++
		a.lostConfirms++
		a.genLostConf++
		a.wmUnknown = true
	}
}

// rebooted forgets what the vault keeps in RAM only: pending logins and
// sessions, and the final login, whose record is then erased.
func (a *account) rebooted() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = map[string]uint64{}
	a.release = nil
	if a.final != "" || a.lockedNow() {
		a.erased = true
	}
	a.final = ""
}

// tally is the accounting of the current registration: the driver's counts
// and what the vault's last login-start receipt says.
type tally struct {
	answered, lost, confirmed, lostConfirms uint64
	vaultAttempts, vaultSuccesses           uint64
	ok                                      bool
}

func (a *account) tally() tally {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.atStart
}

func (a *account) tallyLocked(r *protocol.Receipt) tally {
	t := tally{answered: a.genAnswered, lost: a.genLost, confirmed: a.genConfirmed, lostConfirms: a.genLostConf,
		vaultAttempts: uint64(r.AttemptsTotal), vaultSuccesses: uint64(r.SuccessesTotal)}
	t.ok = r.Generation == a.gen && t.vaultAttempts >= t.answered && t.vaultAttempts <= t.answered+t.lost &&
		t.vaultSuccesses >= t.confirmed && t.vaultSuccesses <= t.confirmed+t.lostConfirms
	return t
}
