package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// Every flow, including failures and a store that breaks, logs nothing of
// the password, the backup key or the wrapped key, in raw or hex form.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	var logs syncbuf.Buffer
	h := newHarness(t, Options{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := h.client("zed")
	password := []byte("hunter2-correct-horse")
	key := register(t, c, string(password), 3)
	var replies [][]byte
	rt := c.RoundTrip
	c.RoundTrip = func(ctx context.Context, req []byte) ([]byte, error) {
		reply, err := rt(ctx, req)
		replies = append(replies, reply)
		return reply, err
	}
	c.Login(context.Background(), []byte("wrong"))
	s := mustLogin(t, c, string(password), key)
	s.Release(context.Background())
	h.store.FailCommit = func() error { return errors.New("sector 7 of /dev/mmcblk0: key " + hex.EncodeToString(key)) }
	c.Login(context.Background(), password)
	h.store.FailCommit = nil
	s = mustLogin(t, c, string(password), key)
	s.ChangePassword(context.Background(), []byte("new password"), 3)

	secrets := [][]byte{password, key, []byte(hex.EncodeToString(key)), []byte(hex.EncodeToString(password))}
	for _, secret := range secrets {
		if bytes.Contains(logs.Bytes(), secret) {
			t.Fatalf("a secret appears in the vault's logs:\n%s", logs.Bytes())
		}
		for _, r := range replies {
			if bytes.Contains(r, secret) {
				t.Fatal("a secret appears in clear in a reply")
			}
		}
	}
	// The store's error text, which here even holds key material, is not
	// passed on to the client.
	for _, r := range replies {
		if bytes.Contains(r, []byte("mmcblk0")) {
			t.Fatal("a store error's text reached a reply")
		}
	}
}

// panickyStore panics on Get while armed: a bug deep in storage must give an
// internal-error reply and leave the vault serving, with no lock held.
type panickyStore struct {
	*memstore.Store
	armed bool
}

func (p *panickyStore) Get(id []byte) ([]byte, bool, error) {
	if p.armed {
		panic("store bug")
	}
	return p.Store.Get(id)
}

func TestAPanicIsAnInternalErrorAndServiceContinues(t *testing.T) {
	st := &panickyStore{Store: memstore.New()}
	v, err := New(context.Background(), st, Options{Create: true, Log: slog.New(slog.NewTextHandler(&syncbuf.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &testclient.Client{RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return v.Handle(ctx, req), nil },
		Identity: v.Identity(), UserID: []byte("pan")}
	key := register(t, c, "pw", 5)
	st.armed = true
	_, _, err = c.Login(context.Background(), []byte("pw"))
	wantCode(t, err, protocol.CodeInternal)
	st.armed = false
	mustLogin(t, c, "pw", key) // the user's lock was released by the panic's unwinding
}
