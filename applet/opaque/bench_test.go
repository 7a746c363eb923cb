package opaque

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// loginFixture is one registered user and one client login whose KE2
// randomness is fixed, so that a single KE3 finishes every repetition and
// the benchmark times only the server.
type loginFixture struct {
	keys       ServerKeys
	user       testUser
	ids        Identities
	context    []byte
	ke1        []byte
	randomness KE2Randomness
	ke2        []byte
	ke3        []byte
	session    []byte
}

func newLoginFixture(tb testing.TB) *loginFixture {
	tb.Helper()
	keys := newTestServerKeys(tb)
	u := register(tb, keys, []byte("bench-user"), []byte("bench password"))
	fx := &loginFixture{keys: keys, user: u, ids: u.ids, context: cofferContext}
	if _, err := rand.Read(fx.randomness.MaskingNonce[:]); err != nil {
		tb.Fatal(err)
	}
	if _, err := rand.Read(fx.randomness.ServerNonce[:]); err != nil {
		tb.Fatal(err)
	}
	if _, err := rand.Read(fx.randomness.ServerKeyshareSeed[:]); err != nil {
		tb.Fatal(err)
	}
	c, ke1, err := NewClientLogin(rand.Reader, u.password)
	if err != nil {
		tb.Fatal(err)
	}
	fx.ke1 = ke1
	ke2, st, err := GenerateKE2Deterministic(keys, u.record, u.key, u.id, ke1, fx.ids, fx.context, fx.randomness)
	if err != nil {
		tb.Fatal(err)
	}
	fx.ke2 = ke2
	if fx.ke3, fx.session, _, err = c.Finish(ke2, fx.ids, fx.context, nil); err != nil {
		tb.Fatal(err)
	}
	if s, err := st.Finish(fx.ke3); err != nil || !bytes.Equal(s, fx.session) {
		tb.Fatalf("fixture login failed: %v", err)
	}
	return fx
}

// replayReader hands out the same randomness on every KE2, in the order
// GenerateKE2 reads it.
type replayReader struct {
	r KE2Randomness
	n int
}

func (rr *replayReader) Read(p []byte) (int, error) {
	chunks := [][]byte{rr.r.MaskingNonce[:], rr.r.ServerNonce[:], rr.r.ServerKeyshareSeed[:]}
	n := copy(p, chunks[rr.n%3])
	rr.n++
	return n, nil
}

// BenchmarkServerLogin times the vault's side of one login: GenerateKE2
// (parse KE1 and record, OPRF evaluation, 3DH, MACs) and Finish.
func BenchmarkServerLogin(b *testing.B) {
	fx := newLoginFixture(b)
	rr := &replayReader{r: fx.randomness}
	b.ReportAllocs()
	for b.Loop() {
		ke2, st, err := GenerateKE2(rr, fx.keys, fx.user.record, fx.user.key, fx.user.id, fx.ke1, fx.ids, fx.context)
		if err != nil {
			b.Fatal(err)
		}
		if len(ke2) != KE2Size {
			b.Fatal("short KE2")
		}
		if _, err := st.Finish(fx.ke3); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateKE1 times the check the vault runs before counting a
// guess.
func BenchmarkValidateKE1(b *testing.B) {
	fx := newLoginFixture(b)
	for b.Loop() {
		if err := ValidateKE1(fx.ke1); err != nil {
			b.Fatal(err)
		}
	}
}
