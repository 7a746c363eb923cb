package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/protocol"
)

type ed25519PublicKey = ed25519.PublicKey

func newProvisioningKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEmptyStore() Store { return memstore.New() }

// FuzzHandle feeds arbitrary requests to a vault with one registered user:
// every reply must be a well-formed envelope and nothing may panic (handle,
// unlike Handle, has no recover to hide one).
func FuzzHandle(f *testing.F) {
	h := newHarness(f, Options{})
	c := h.client("fuzz")
	var seeds [][]byte
	rt := c.RoundTrip
	c.RoundTrip = func(ctx context.Context, req []byte) ([]byte, error) {
		seeds = append(seeds, append([]byte(nil), req...))
		return rt(ctx, req)
	}
	key := register(f, c, "pw", 10)
	s := mustLogin(f, c, "pw", key)
	s.Release(context.Background())
	c.Login(context.Background(), []byte("wrong"))
	c.RoundTrip = rt
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, req []byte) {
		reply := h.v.handle(context.Background(), req)
		if _, err := protocol.PeekType(reply); err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
	})
}
