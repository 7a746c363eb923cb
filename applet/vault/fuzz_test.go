package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
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
// realmSeeds drives every realm message at h (realm 1 of a 2-of-2 set whose
// realm 2 is another vault) and returns the requests h received.
func realmSeeds(f *testing.F, h *harness) [][]byte {
	ctx := context.Background()
	var seeds [][]byte
	r1 := h.realm("fuzz-realm")
	rt := r1.RoundTrip
	r1.RoundTrip = func(ctx context.Context, req []byte) ([]byte, error) {
		seeds = append(seeds, append([]byte(nil), req...))
		return rt(ctx, req)
	}
	r2 := newHarness(f, Options{}).realm("fuzz-realm-2")
	ver, err := realmtest.NewVersion([]*realmtest.Realm{r1, r2}, []byte("pw"), realmtest.VersionOptions{Limit: 5})
	if err != nil {
		f.Fatal(err)
	}
	if err := ver.RegisterAll(ctx); err != nil {
		f.Fatal(err)
	}
	r1.Probe(ctx)
	rec, err := ver.Recover(ctx, []byte("pw"), 1, 2)
	if err != nil {
		f.Fatal(err)
	}
	sess, err := r1.Unlock(ctx, &rec.Evaluations[0].Ticket, ver.UnlockKeys[0])
	if err != nil {
		f.Fatal(err)
	}
	sess.Status(ctx)
	sess.Commit(ctx, ver.ID())
	next, _ := realmtest.NewVersion([]*realmtest.Realm{r1, r2}, []byte("pw2"), realmtest.VersionOptions{Limit: 5})
	sess.PutVersion(ctx, next.Material(1))
	sess.Close(ctx)
	if tk, err := r1.Challenge(ctx, protocol.PurposeSession, ver.ID()); err == nil {
		r1.UnlockWithTag(ctx, tk, ver.UnlockKeys[0], make([]byte, protocol.RealmTagSize))
	}
	return seeds
}

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
	seeds = append(seeds, realmSeeds(f, h)...)
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

// FuzzRealmRecord feeds arbitrary bytes to the realm record decoder: it
// must refuse or accept without panicking, and whatever it accepts keeps
// the record's invariants and encodes back to the same bytes.
func FuzzRealmRecord(f *testing.F) {
	largest := largestRealmRecord()
	tomb := largestRealmRecord().tombstone()
	small := largestRealmRecord()
	small.Versions, small.Attempts, small.Watermark, small.Successes, small.Limit = small.Versions[:1], 0, 0, 0, 1
	small.Versions[0].Limit = 1
	for _, r := range []*realmRecord{largest, tomb, small} {
		b, err := r.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRealmRecord(b)
		if err != nil {
			return
		}
		if err := r.check(); err != nil {
			t.Fatalf("accepted a record that fails its check: %v", err)
		}
		again, err := r.marshal()
		if err != nil {
			t.Fatalf("an accepted record does not encode: %v", err)
		}
		if _, err := parseRealmRecord(again); err != nil {
			t.Fatalf("an accepted record does not decode again: %v", err)
		}
	})
}
