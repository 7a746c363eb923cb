package opaque

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// testUser registers with the package's own client; portable, so these
// tests also run under qemu-arm.
type testUser struct {
	id, password []byte
	ids          Identities
	record       Record
	key          OPRFKey
	exportKey    []byte
}

func newTestServerKeys(t testing.TB) ServerKeys {
	t.Helper()
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Validate(); err != nil {
		t.Fatalf("fresh keys do not validate: %v", err)
	}
	return keys
}

func register(t testing.TB, keys ServerKeys, id, password []byte) testUser {
	t.Helper()
	key, err := NewOPRFKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ids := Identities{Client: id}
	reg, request, err := NewClientRegistration(rand.Reader, password)
	if err != nil {
		t.Fatal(err)
	}
	response, err := CreateRegistrationResponse(request, keys.Public, key)
	if err != nil {
		t.Fatal(err)
	}
	rec, exportKey, err := reg.Finalize(rand.Reader, response, ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseRecord(rec.Bytes())
	if err != nil || parsed != rec {
		t.Fatalf("record does not round-trip: %v", err)
	}
	return testUser{id: id, password: password, ids: ids, record: rec, key: key, exportKey: exportKey}
}

// login runs one login; it returns the client's error and, when the client
// produced a KE3, the server's Finish error and both session keys.
func login(t testing.TB, keys ServerKeys, u testUser, password []byte) (clientErr, serverErr error, cs, ss, exportKey []byte, st *ServerState) {
	t.Helper()
	c, ke1, err := NewClientLogin(rand.Reader, password)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateKE1(ke1); err != nil {
		t.Fatalf("ValidateKE1 on a real KE1: %v", err)
	}
	ke2, st, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1, u.ids, cofferContext)
	if err != nil {
		t.Fatal(err)
	}
	ke3, cs, exportKey, clientErr := c.Finish(ke2, u.ids, cofferContext, nil)
	if clientErr != nil {
		return clientErr, nil, nil, nil, nil, st
	}
	ss, serverErr = st.Finish(ke3)
	return nil, serverErr, cs, ss, exportKey, st
}

// cofferContext is the context the vault and its clients bind into every
// handshake; the package itself takes any.
var cofferContext = []byte(protocol.OPAQUEContext)

func TestLoginRoundTrip(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("alice"), []byte("hunter2"))
	var sessions [][]byte
	for i := range 2 {
		clientErr, serverErr, cs, ss, ek, _ := login(t, keys, u, u.password)
		if clientErr != nil || serverErr != nil {
			t.Fatalf("login %d: client %v, server %v", i, clientErr, serverErr)
		}
		if len(cs) != HashSize || !bytes.Equal(cs, ss) {
			t.Fatalf("login %d: session keys differ", i)
		}
		if !bytes.Equal(ek, u.exportKey) {
			t.Fatalf("login %d: export key not stable", i)
		}
		sessions = append(sessions, ss)
	}
	if bytes.Equal(sessions[0], sessions[1]) {
		t.Error("two logins gave the same session key")
	}
}

func TestLoginWrongPassword(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("bob"), []byte("right"))
	clientErr, _, _, _, _, st := login(t, keys, u, []byte("wrong"))
	wantErr(t, clientErr, ErrAuthentication, "client with the wrong password")
	// The server cannot tell until KE3; a KE3 from someone without the
	// password fails there.
	_, err := st.Finish(bytes.Repeat([]byte{0x5a}, KE3Size))
	wantErr(t, err, ErrAuthentication, "server Finish after a wrong password")
}

func TestClientDetectsWrongServerKey(t *testing.T) {
	// A KE2 from a server with another AKE key must fail at the client
	// (the envelope binds the server public key), with the same error
	// as a wrong password.
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("carol"), []byte("pw"))
	impostor := newTestServerKeys(t)
	c, ke1, err := NewClientLogin(rand.Reader, u.password)
	if err != nil {
		t.Fatal(err)
	}
	ke2, _, err := GenerateKE2(rand.Reader, impostor, u.record, u.key, u.id, ke1, u.ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = c.Finish(ke2, u.ids, nil, nil)
	wantErr(t, err, ErrAuthentication, "client against an impostor key")
}

func TestClientDetectsTamperedKE2(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("dave"), []byte("pw"))
	// Flip one bit in each region of KE2; every change must make the
	// client fail (with ErrAuthentication, or a decoding error for the
	// group elements).
	for _, offset := range []int{0, ElementSize, ElementSize + NonceSize, credentialResponseSize - 1,
		credentialResponseSize, credentialResponseSize + NonceSize, KE2Size - 1} {
		c, ke1, err := NewClientLogin(rand.Reader, u.password)
		if err != nil {
			t.Fatal(err)
		}
		ke2, _, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1, u.ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		ke2[offset] ^= 0x01
		if _, _, _, err := c.Finish(ke2, u.ids, nil, nil); err == nil {
			t.Errorf("client accepted KE2 with byte %d flipped", offset)
		}
	}
}

// loginToKE3 runs a correct login up to the client's KE3 and returns the
// server state that KE3 answers.
func loginToKE3(t testing.TB, keys ServerKeys, u testUser) (*ServerState, []byte) {
	t.Helper()
	c, ke1, err := NewClientLogin(rand.Reader, u.password)
	if err != nil {
		t.Fatal(err)
	}
	ke2, st, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1, u.ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	ke3, _, _, err := c.Finish(ke2, u.ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, ke3
}

func TestFinishSingleUse(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("erin"), []byte("pw"))
	c, ke1, err := NewClientLogin(rand.Reader, u.password)
	if err != nil {
		t.Fatal(err)
	}
	ke2, st, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1, u.ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	ke3, _, _, err := c.Finish(ke2, u.ids, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Finish(ke3); err != nil {
		t.Fatal(err)
	}
	// Replay of the same, valid KE3.
	_, err = st.Finish(ke3)
	wantErr(t, err, ErrStateUsed, "replayed KE3")
	// The secrets are gone.
	if !allZero(st.expectedClientMAC[:]) || !allZero(st.sessionKey[:]) {
		t.Error("state secrets not erased after Finish")
	}
	// A client state is single use too.
	_, _, _, err = c.Finish(ke2, u.ids, nil, nil)
	wantErr(t, err, ErrStateUsed, "client Finish twice")
}

func TestFinishFailureSpendsState(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("frank"), []byte("pw"))
	for _, bad := range [][]byte{nil, make([]byte, KE3Size-1), make([]byte, KE3Size+1), make([]byte, KE3Size)} {
		st, ke3 := loginToKE3(t, keys, u)
		_, err := st.Finish(bad)
		if len(bad) == KE3Size {
			wantErr(t, err, ErrAuthentication, "all-zero KE3")
		} else {
			wantErr(t, err, ErrMalformed, "KE3 of wrong length")
		}
		if !allZero(st.expectedClientMAC[:]) || !allZero(st.sessionKey[:]) {
			t.Error("state secrets not erased after a failed Finish")
		}
		// The right KE3 after a failure is refused: one try per KE2.
		_, err = st.Finish(ke3)
		wantErr(t, err, ErrStateUsed, "valid KE3 after a failed one")
	}
}

func TestDiscard(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("gina"), []byte("pw"))
	st, ke3 := loginToKE3(t, keys, u)
	st.Discard()
	if !allZero(st.expectedClientMAC[:]) || !allZero(st.sessionKey[:]) {
		t.Error("Discard left secrets behind")
	}
	_, err := st.Finish(ke3)
	wantErr(t, err, ErrStateUsed, "Finish after Discard")
	var nilState *ServerState
	_, err = nilState.Finish(ke3)
	wantErr(t, err, ErrStateUsed, "Finish on a nil state")
	nilState.Discard() // must not panic
}

func TestFinishConcurrentReplay(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("hank"), []byte("pw"))
	st, ke3 := loginToKE3(t, keys, u)
	const racers = 16
	var wg sync.WaitGroup
	results := make(chan error, racers)
	for range racers {
		wg.Go(func() {
			_, err := st.Finish(ke3)
			results <- err
		})
	}
	wg.Wait()
	close(results)
	ok, used := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrStateUsed):
			used++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 || used != racers-1 {
		t.Errorf("%d successes and %d refusals, want 1 and %d", ok, used, racers-1)
	}
}

func TestFakeRecord(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 64)
	a1, ka1, err := FakeRecord(seed, []byte("ghost-a"))
	if err != nil {
		t.Fatal(err)
	}
	a2, ka2, err := FakeRecord(seed, []byte("ghost-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, kb, err := FakeRecord(seed, []byte("ghost-b"))
	if err != nil {
		t.Fatal(err)
	}
	c, kc, err := FakeRecord(bytes.Repeat([]byte{8}, 64), []byte("ghost-a"))
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 || ka1 != ka2 {
		t.Error("fake record not stable for the same id")
	}
	if a1.ClientPublicKey == b.ClientPublicKey || a1.MaskingKey == b.MaskingKey || ka1 == kb {
		t.Error("fake records of two ids share a field")
	}
	if a1.ClientPublicKey == c.ClientPublicKey || a1.MaskingKey == c.MaskingKey || ka1 == kc {
		t.Error("fake records under two seeds share a field")
	}
	if a1.Envelope != [EnvelopeSize]byte{} {
		t.Error("fake envelope is not all zeros")
	}
	if _, err := ParseRecord(a1.Bytes()); err != nil {
		t.Errorf("fake record does not parse like a real one: %v", err)
	}
	// The OPRF key is a real per-id key: the same request evaluates the
	// same way twice, as it would for a real user.
	_, request, err := NewClientRegistration(rand.Reader, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	keys := newTestServerKeys(t)
	r1, err := CreateRegistrationResponse(request, keys.Public, ka1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := CreateRegistrationResponse(request, keys.Public, ka2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r1, r2) {
		t.Error("fake OPRF evaluation not stable")
	}
	// No password opens it.
	fake := testUser{id: []byte("ghost-a"), ids: Identities{Client: []byte("ghost-a")}, record: a1, key: ka1}
	for _, pw := range [][]byte{[]byte(""), []byte("ghost"), []byte("password")} {
		clientErr, _, _, _, _, _ := login(t, keys, fake, pw)
		wantErr(t, clientErr, ErrAuthentication, "login to a fake record")
	}
	// Bad arguments.
	_, _, err = FakeRecord(seed[:31], []byte("ghost-a"))
	wantErr(t, err, ErrInvalidArgument, "short fake seed")
	_, _, err = FakeRecord(seed, nil)
	wantErr(t, err, ErrInvalidArgument, "empty id")
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
