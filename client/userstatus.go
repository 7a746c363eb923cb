package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// Errors of the user status. Each is wrapped with details.
var (
	// ErrBadUserStatus: the vault's user status does not verify (signature,
	// nonce, user) or does not decode: it is not the vault's answer to this
	// request, and nothing in it may be shown as the vault's.
	ErrBadUserStatus = errors.New("the vault's signed count of tries does not check out")
	// ErrStatusContradicts: a correctly signed user status contradicts the
	// last receipt this device holds for the same registration, with
	// nothing counted in between (protocol/SPEC.md, "User status").
	ErrStatusContradicts = errors.New("the vault's signed count of tries contradicts its last receipt")
)

// UserStatus is the vault's signed, non-counting account of this user's
// record, checked against the request and this device's last receipt.
type UserStatus struct {
	*protocol.UserStatus
	// OtherRegistration: the status is about another registration than
	// the one this device registered or last opened (the key was deleted,
	// replaced, or given a new password elsewhere; a user without a record
	// gets a status shaped like a real one). Its tries are not those of
	// the key this device knows.
	OtherRegistration bool
	// NotFromThisDevice counts the attempts counted since this device's
	// last receipt of this registration (known: it had one).
	NotFromThisDevice uint64
	NotFromThisKnown  bool
}

// UserStatus asks the vault how many tries this user has left, spending
// none (protocol/SPEC.md, "User status"). The answer must verify with the
// pinned signing key and echo this request's nonce and user id; its store
// sequence goes through the rollback check; against the last receipt of the
// same registration its attempts total must not go back, and when nothing
// was counted since, its tries left must be what that receipt implies.
// Nothing is saved but the highest store sequence.
func (c *Client) UserStatus(ctx context.Context) (*UserStatus, error) {
	req := protocol.NewUserStatusRequest(c.userID)
	var reply protocol.UserStatusReply
	if err := c.conn.Call(ctx, protocol.TypeUserStatus, req, &reply); err != nil {
		return nil, err
	}
	st, err := reply.Verify(c.id.SigningKey, req)
	if err != nil {
		return nil, fmt.Errorf("client: %w: %w", ErrBadUserStatus, err)
	}
	if err := c.sequence(st.StoreSequence); err != nil {
		return nil, err
	}
	us := &UserStatus{UserStatus: st, OtherRegistration: c.cfg.Generation != 0 && st.Generation != c.cfg.Generation}
	last := c.cfg.LastReceipt
	if last == nil || last.Generation != st.Generation {
		return us, nil
	}
	total := uint64(st.AttemptsTotal)
	if total < last.AttemptsTotal {
		return nil, &RollbackError{Highest: last.AttemptsTotal, Got: total, Attempts: true}
	}
	us.NotFromThisDevice, us.NotFromThisKnown = total-last.AttemptsTotal, true
	if err := statusFollows(last, st); err != nil {
		return nil, err
	}
	return us, nil
}

// statusFollows checks a user status of the registration of the last
// receipt against it, when nothing was counted in between: the table of
// protocol/SPEC.md, "User status".
func statusFollows(last *ReceiptInfo, st *protocol.UserStatus) error {
	if uint64(st.AttemptsTotal) != last.AttemptsTotal {
		return nil // attempts counted since: the receipt implies nothing now
	}
	successes := uint64(st.SuccessesTotal)
	ok := true
	switch {
	case last.Kind == ReceiptKindName(protocol.ReceiptReleased) && successes == last.SuccessesTotal+1:
		ok = st.TriesLeft == last.TriesLeft // the login this device confirmed
	case successes != last.SuccessesTotal:
		return nil // a confirmation this receipt does not know of (another device's login)
	case last.Kind == ReceiptKindName(protocol.ReceiptRegistered), last.Kind == ReceiptKindName(protocol.ReceiptChanged):
		ok = st.TriesLeft == st.Limit && st.Limit == last.Limit
	case last.Kind == ReceiptKindName(protocol.ReceiptAttempt):
		// The final attempt's login may have proved the password and
		// revived the record with one try left, its reply lost.
		ok = st.TriesLeft == last.TriesLeft || (last.TriesLeft == 0 && st.TriesLeft == 1)
	case last.Kind == ReceiptKindName(protocol.ReceiptReleased):
		ok = st.TriesLeft <= last.TriesLeft // never confirmed: a failed attempt
	case last.Kind == ReceiptKindName(protocol.ReceiptLocked):
		ok = st.TriesLeft <= 1 // 1 only if a final login revived it
	}
	if !ok {
		return fmt.Errorf("client: %w: it shows %d of %d tries left with no attempt counted since the %s receipt that showed %d",
			ErrStatusContradicts, st.TriesLeft, st.Limit, last.Kind, last.TriesLeft)
	}
	return nil
}

// NotCountedError is a login that failed at its first message with an
// answer that promises the vault counted nothing: cofferd's rate limit
// (429 with Retry-After: it refuses before relaying) or the vault's busy
// (protocol/SPEC.md, "Counting", rule 2: the place is reserved before the
// count). Both come through the host, which can lie; a caller that starts
// the login again on its own first checks, with a signed user status, that
// the attempts total did not move (the CLI does).
//
// Nothing else promises it: the vault's unavailable (its commit may have
// failed after the count reached the store), outcome-unknown, cofferd's
// 503 (also sent when the device went away mid-request), 504, a lost
// connection, and any answer after the KE2 (the count happens at KE1).
type NotCountedError struct {
	Err        error
	RetryAfter time.Duration // how long to wait first
}

func (e *NotCountedError) Error() string { return e.Err.Error() }
func (e *NotCountedError) Unwrap() error { return e.Err }

// busyWait is how long to wait after the vault's busy, which says nothing
// of how long.
const busyWait = time.Second

// notCounted wraps an error of the login's first message in a
// *NotCountedError when it is one of the two answers that promise nothing
// was counted.
func notCounted(err error) error {
	var se *ServerError
	if errors.As(err, &se) && se.StatusCode == http.StatusTooManyRequests && se.RetryAfter > 0 {
		return &NotCountedError{Err: err, RetryAfter: se.RetryAfter}
	}
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Code == protocol.CodeBusy {
		return &NotCountedError{Err: err, RetryAfter: busyWait}
	}
	return err
}

// Refused reports whether this login checked the password and it did not
// open the key the vault holds: a wrong password, or a receipt of another
// registration whose envelope the password did not open either. Such a
// password is never worth sending again.
func (e *LoginError) Refused() bool {
	if errors.Is(e.Err, ErrWrongPassword) {
		return true
	}
	return errors.Is(e.Err, ErrNotHeld) && e.Receipt != nil && e.Receipt.Kind == protocol.ReceiptAttempt
}
