package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/client/internal/fakehost"
)

// operator is the host acting as a client of the vault behind it, for any
// user id: it can register accounts of its own and send KE1s.
func operator(h *fakehost.Host, user []byte) *testclient.Client {
	return &testclient.Client{RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return h.Vault(ctx, req), nil },
		Identity: h.VaultIdentity(), UserID: user}
}

// What the client's rollback checks catch off hardware, where the host
// restores store and anchor files together, as README and protocol/SPEC.md
// ("What these checks catch") state it. If this test fails, a gap was
// closed: update them.
func TestOffHardwareRollbackIsSeenOnlyAsFarAsTheClientSaw(t *testing.T) {
	ctx := context.Background()
	t.Run("status, once the sequence is pushed back up", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		f.register("pw", 5)
		rollback := f.host.Snapshot()
		if _, err := f.login("wrong"); err == nil {
			t.Fatal("a wrong password logged in")
		}
		highest := f.cfg.HighestStoreSequence
		rollback()
		var rb *RollbackError
		if _, err := Connect(ctx, f.cfg, f.opts); !errors.As(err, &rb) {
			t.Fatalf("the contact right after the rollback (its signed status): %v", err)
		}
		// Registrations of the host's own accounts push the sequence
		// (restarting the vault would too: each start anchors once).
		for i := 0; ; i++ {
			r, err := operator(f.host, []byte(fmt.Sprintf("filler-%d", i))).Register(ctx, []byte("x"), make([]byte, 32), 1)
			if err != nil {
				t.Fatal(err)
			}
			if r.StoreSequence >= highest {
				break
			}
		}
		if _, err := f.connect().Status(ctx); err != nil {
			t.Fatalf("status after the sequence caught up: %v", err)
		}
	})
	t.Run("guesses made and undone between two logins", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		k := f.register("pw", 3)
		if err := f.mustLogin("pw", k).Close(ctx); err != nil {
			t.Fatal(err)
		}
		restore := f.host.Snapshot()
		guesses := 0
		for round := 0; round < 2; round++ {
			for i := 0; i < 2; i++ { // below the limit of 3: the record stays
				if _, _, err := operator(f.host, f.host.UserID).Login(ctx, []byte("guess")); !errors.Is(err, testclient.ErrWrongPassword) {
					t.Fatalf("operator guess: %v", err)
				}
				guesses++
			}
			restore()
		}
		s := f.mustLogin("pw", k) // no rollback is reported
		defer s.Close(ctx)
		if guesses <= 3 || s.Released.FailedSinceSuccess != 0 || s.NotFromThisDevice != 0 {
			t.Fatalf("%d guesses against a limit of 3; the user is shown %d failed and %d not from this device",
				guesses, s.Released.FailedSinceSuccess, s.NotFromThisDevice)
		}
	})
}
