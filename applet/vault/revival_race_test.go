package vault

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// A login that reads the tombstone while the final login is pending must
// not be told the key is erased because the final login resolved before
// its receipt was signed. The final login here proves the password and
// revives the record between the locked login's read and its receipt (on
// a busy vault that is the locked login's wait for the commit in flight):
// the receipt said locked with revivable_ms 0, and a client said "erased
// for ever" of a key that was back (client's
// TestParallelRightPasswordsNeverSayErased failed about one run in five;
// the load soak's parallel logins made it plain).
func TestALockedReceiptIsNotErasedByARevivalItRaced(t *testing.T) {
	const limit = 2
	clock := newFakeClock()
	var countdown atomic.Int32
	var hook func()
	h := newHarness(t, Options{Now: func() time.Time {
		if countdown.Load() > 0 && countdown.Add(-1) == 0 {
			hook()
		}
		return clock.Now()
	}})
	c := h.client("vic")
	key := register(t, c, "right", limit)
	operatorGuesses(t, h, "vic", 1)
	finish, _, err := loginPending(t, h, "vic", "right") // the final attempt: a tombstone
	if err != nil {
		t.Fatal(err)
	}
	revived := false
	hook = func() {
		if _, err := finish(); err != nil {
			t.Errorf("the final login's right password: %v", err)
		}
		revived = true
	}
	// The locked login's clock reads: one to reserve its place, then the
	// one its receipt is made with, where the final login finishes.
	countdown.Store(2)
	_, locked, err := c.Login(context.Background(), []byte("right"))
	if !errors.Is(err, testclient.ErrWrongPassword) || locked == nil {
		t.Fatalf("a login on the tombstone: %v", err)
	}
	if !revived {
		t.Fatal("the final login did not finish while the locked login was in flight")
	}
	if locked.Kind != protocol.ReceiptLocked || locked.RevivableMillis == 0 {
		t.Fatalf("locked receipt %+v: revivable_ms 0 says the key is erased, but the record was revived", locked)
	}
	s := mustLogin(t, c, "right", key)
	mustConfirm(t, s, key)
}
