package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
)

// worker is one client driving one account.
type worker struct {
	run  *runner
	acct *account
	vc   *testclient.Client // every account: the ordinary and lockout loops, the final checks
	key  []byte             // the backup key the vault must release

	// product clients only
	pc   *client.Client
	pkey *client.BackupKey

	meter    *meter
	rng      *rand.Rand
	ops      opCounts
	pwNumber int
}

// opCounts are the operations a worker completed, by kind.
type opCounts struct {
	restores, releases, wrong, changes, lockouts, registrations, busyWaits int64
}

func (o *opCounts) add(p opCounts) {
	o.restores += p.restores
	o.releases += p.releases
	o.wrong += p.wrong
	o.changes += p.changes
	o.lockouts += p.lockouts
	o.registrations += p.registrations
	o.busyWaits += p.busyWaits
}

// busyWait reports whether err is explicit backpressure and how long to
// wait before trying again.
func busyWait(err error) (time.Duration, bool) {
	var se *client.ServerError
	if errors.As(err, &se) && (se.StatusCode == http.StatusTooManyRequests || se.StatusCode == http.StatusServiceUnavailable) {
		return max(se.RetryAfter, 100*time.Millisecond), true
	}
	if errors.Is(err, &protocol.Error{Code: protocol.CodeBusy}) {
		return 100 * time.Millisecond, true
	}
	return 0, false
}

// after deals with an operation's error: explicit backpressure waits as it
// was told (the meter counted it), anything else is a failure of the
// operation (the meter has also recorded what the exchange got).
func (w *worker) after(op string, err error) {
	if err == nil {
		return
	}
	if wait, ok := busyWait(err); ok {
		w.ops.busyWaits++
		w.sleep(wait + time.Duration(w.rng.Int64N(int64(wait/2)+1)))
		return
	}
	w.acct.failf("op "+op, "%v", err)
	w.sleep(100 * time.Millisecond) // whatever it was, do not spin on it
}

// sleep waits for d or until the run stops.
func (w *worker) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.run.stop:
	}
}

// ordinaryLoop is the usual mix: right passwords (with and without a
// release command), wrong guesses while the record has room for them, and
// now and then a password change.
func (w *worker) ordinaryLoop(ctx context.Context) {
	for !w.run.stopped() {
		left, known := w.acct.triesLeft()
		switch {
		case known && left > 3 && w.rng.Float64() < w.run.cfg.WrongShare:
			w.after("wrong guess", w.wrongGuess(ctx))
		case known && w.run.changes.take():
			w.after("change password", w.changePassword(ctx))
		default:
			w.after("restore", w.restore(ctx, w.rng.IntN(2) == 0))
		}
	}
}

// lockoutLoop guesses wrong until the vault erases the key, shows with the
// right password that it is gone, waits, and registers again.
func (w *worker) lockoutLoop(ctx context.Context) {
	shown := false // the current tombstone was shown locked
	for !w.run.stopped() {
		if !w.acct.needsRegistration() {
			shown = false
			if left, known := w.acct.triesLeft(); !known || left > 0 {
				w.after("wrong guess", w.wrongGuess(ctx))
				continue
			}
		}
		if erased := w.acct.erasedNow(); erased && !shown {
			err := w.showLocked(ctx)
			w.after("show locked", err)
			if err == nil {
				shown = true
				w.ops.lockouts++
				w.sleep(w.run.cfg.LockoutPause)
			}
			continue
		} else if !erased && w.acct.needsRegistration() {
			w.after("register", w.register(ctx)) // the first registration
			continue
		} else if !erased {
			// Locked, with the final login still unresolved (its KE3 met
			// backpressure): the vault forgets it within loginTTL.
			w.sleep(time.Second)
			w.after("show locked", w.showLocked(ctx))
			continue
		}
		w.after("register", w.register(ctx))
	}
}

// productLoop runs the product client at a user's pace: restores, a few
// wrong guesses, rarely a password change.
func (w *worker) productLoop(ctx context.Context) {
	for !w.run.stopped() {
		w.sleep(w.run.cfg.ProductThink)
		if w.run.stopped() {
			return
		}
		left, known := w.acct.triesLeft()
		r := w.rng.Float64()
		var op string
		var err error
		w.run.productSlots <- struct{}{}
		switch {
		case known && left > 3 && r < 0.25:
			op, err = "product wrong guess", w.productWrong(ctx)
		case known && r > 0.95:
			op, err = "product change password", w.productChange(ctx)
		default:
			op, err = "product restore", w.productRestore(ctx)
		}
		<-w.run.productSlots
		w.after(op, err)
	}
}

func (w *worker) register(ctx context.Context) error {
	r, err := w.vc.Register(ctx, w.acct.password, w.key, w.run.limitFor(w.acct.kind))
	if err != nil {
		return err
	}
	w.acct.registered(r)
	w.ops.registrations++
	return nil
}

// restore logs in with the right password, checks the key and the release
// receipt, and confirms the login: with a release command (which also
// fetches the key again) and a close, or with a close alone.
func (w *worker) restore(ctx context.Context, withRelease bool) error {
	s, _, err := w.vc.Login(ctx, w.acct.password)
	if errors.Is(err, testclient.ErrWrongPassword) {
		return fmt.Errorf("the right password was refused")
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(s.BackupKey, w.key) {
		w.acct.failf("wrong-key", "the vault released another key")
	}
	w.acct.checkReleased(s.Released)
	if !withRelease {
		if err := s.Confirm(ctx); err != nil {
			return err
		}
		w.ops.restores++
		return nil
	}
	k, r, err := s.Release(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(k, w.key) {
		w.acct.failf("wrong-key", "the release command released another key")
	}
	w.acct.checkCurrent(r)
	w.ops.restores++
	w.ops.releases++
	_, err = s.Command(ctx, &protocol.SessionCommand{Command: protocol.CommandClose})
	return err
}

func (w *worker) wrongGuess(ctx context.Context) error {
	s, _, err := w.vc.Login(ctx, w.acct.wrong)
	if errors.Is(err, testclient.ErrWrongPassword) {
		w.ops.wrong++
		return nil
	}
	if err == nil {
		s.Confirm(ctx)
		return fmt.Errorf("a wrong password was accepted")
	}
	return err
}

// showLocked logs in with the right password to a record the model says
// is erased: the vault must answer with a locked receipt (checked by the
// model) and release nothing.
func (w *worker) showLocked(ctx context.Context) error {
	s, _, err := w.vc.Login(ctx, w.acct.password)
	if errors.Is(err, testclient.ErrWrongPassword) {
		return nil
	}
	if err == nil {
		s.Confirm(ctx)
		return fmt.Errorf("a locked record released its key")
	}
	return err
}

func (w *worker) nextPassword() []byte {
	w.pwNumber++
	return fmt.Appendf(nil, "soak password %d of %s", w.pwNumber, w.acct.name)
}

func (w *worker) changePassword(ctx context.Context) error {
	s, _, err := w.vc.Login(ctx, w.acct.password)
	if errors.Is(err, testclient.ErrWrongPassword) {
		return fmt.Errorf("the right password was refused")
	}
	if err != nil {
		return err
	}
	w.acct.checkReleased(s.Released)
	pw := w.nextPassword()
	r, err := s.ChangePassword(ctx, pw, w.run.limitFor(w.acct.kind))
	if err != nil {
		return err
	}
	w.acct.registered(r)
	w.acct.password = pw
	w.ops.changes++
	return nil
}

func (w *worker) productRestore(ctx context.Context) error {
	s, err := w.pc.Login(ctx, w.acct.password)
	if err != nil {
		var le *client.LoginError
		if errors.As(err, &le) {
			return fmt.Errorf("the right password was refused: %w", err)
		}
		return err
	}
	// Close confirms the login. A session whose first command was
	// refused is dropped, not closed again: the client would send the next
	// sequence number, which the vault refuses.
	if !s.BackupKey().Equal(w.pkey) {
		w.acct.failf("wrong-key", "the vault released another key to the product client")
	}
	w.productSaw(s.NotFromThisKnown, s.NotFromThisDevice)
	w.acct.checkReleased(s.Released)
	if err := s.Close(ctx); err != nil {
		return err
	}
	w.ops.restores++
	return nil
}

func (w *worker) productWrong(ctx context.Context) error {
	s, err := w.pc.Login(ctx, w.acct.wrong)
	var le *client.LoginError
	if errors.As(err, &le) && errors.Is(le, client.ErrWrongPassword) {
		w.productSaw(le.NotFromThisKnown, le.NotFromThisDevice)
		w.ops.wrong++
		return nil
	}
	if err == nil {
		s.Close(ctx)
		return fmt.Errorf("a wrong password was accepted")
	}
	return err
}

func (w *worker) productChange(ctx context.Context) error {
	s, err := w.pc.Login(ctx, w.acct.password)
	if err != nil {
		return err
	}
	w.acct.checkReleased(s.Released)
	pw := w.nextPassword()
	r, err := s.ChangePassword(ctx, pw, 0)
	if err != nil {
		return err
	}
	w.acct.registered(r)
	w.acct.password = pw
	w.ops.changes++
	return nil
}

// productSaw checks what the product client tells its user about attempts
// made elsewhere: nobody else uses this account, so none.
func (w *worker) productSaw(known bool, notFromThisDevice uint64) {
	if known && notFromThisDevice != 0 {
		w.acct.failf("product-not-from-this-device", "the product client reports %d attempts not made from it", notFromThisDevice)
	}
}

// verify is the final check of an account: a login with the right
// password, which the model predicts exactly (a release, or for an erased
// record a locked receipt), retried only on explicit backpressure.
func (w *worker) verify(ctx context.Context) {
	for i := 0; i < 100; i++ {
		var err error
		switch {
		case w.acct.needsRegistration() || w.lockedInModel():
			err = w.showLocked(ctx)
		case w.pc != nil:
			w.run.productSlots <- struct{}{}
			err = w.productRestore(ctx)
			<-w.run.productSlots
		default:
			err = w.restore(ctx, false)
		}
		wait, busy := busyWait(err)
		if !busy {
			if err != nil {
				w.acct.failf("op verify", "%v", err)
			}
			return
		}
		time.Sleep(wait)
	}
	w.acct.failf("op verify", "still refused after 100 tries")
}

func (w *worker) lockedInModel() bool {
	w.acct.mu.Lock()
	defer w.acct.mu.Unlock()
	return w.acct.lockedNow()
}
