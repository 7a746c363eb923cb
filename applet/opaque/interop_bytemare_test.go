//go:build amd64 || arm64

// Interop with github.com/bytemare/opaque, the implementation the product's
// client uses. bytemare does not compile for 32-bit ARM, hence the build tag.

package opaque

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/bytemare/ecc"
	"github.com/bytemare/ksf"
	bytemare "github.com/bytemare/opaque"
	"golang.org/x/crypto/argon2"
)

// identityKSF is bytemare's identifier for the Identity KSF (0, the value its
// own RFC vector tests use): fast, and equal to our nil KeyStretch.
const identityKSF = ksf.Identifier(0)

func bytemareConfig(context []byte, stretch ksf.Identifier) *bytemare.Configuration {
	return &bytemare.Configuration{
		OPRF:    bytemare.RistrettoSha512,
		AKE:     bytemare.RistrettoSha512,
		KSF:     stretch,
		KDF:     crypto.SHA512,
		MAC:     crypto.SHA512,
		Hash:    crypto.SHA512,
		Context: context,
	}
}

func bytemareClient(t testing.TB, conf *bytemare.Configuration) *bytemare.Client {
	t.Helper()
	c, err := bytemare.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bytemareScalar converts one of our encoded scalars for bytemare.
func bytemareScalar(t testing.TB, b []byte) *ecc.Scalar {
	t.Helper()
	s := ecc.Ristretto255Sha512.NewScalar()
	if err := s.Decode(b); err != nil {
		t.Fatal(err)
	}
	return s
}

// bytemareServer is bytemare's server holding our key pair.
func bytemareServer(t testing.TB, conf *bytemare.Configuration, keys ServerKeys, serverID []byte) *bytemare.Server {
	t.Helper()
	s, err := bytemare.NewServer(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeyMaterial(&bytemare.ServerKeyMaterial{
		PrivateKey:     bytemareScalar(t, keys.Private[:]),
		PublicKeyBytes: bytes.Clone(keys.Public[:]),
		Identity:       serverID,
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// interopUser is one registration done by bytemare's client against our
// server, with a fresh random OPRF key as the vault does.
type interopUser struct {
	id, password []byte
	ids          Identities
	record       Record
	key          OPRFKey
	exportKey    []byte
}

func registerWithBytemare(t testing.TB, conf *bytemare.Configuration, keys ServerKeys, id, password []byte, ids Identities, opts ...*bytemare.ClientOptions) interopUser {
	t.Helper()
	key, err := NewOPRFKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := bytemareClient(t, conf)
	req, err := c.RegistrationInit(password)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := CreateRegistrationResponse(req.Serialize(), keys.Public, key)
	if err != nil {
		t.Fatal(err)
	}
	bResp, err := c.Deserialize.RegistrationResponse(resp)
	if err != nil {
		t.Fatalf("bytemare rejects our registration response: %v", err)
	}
	bRec, exportKey, err := c.RegistrationFinalize(bResp, ids.Client, ids.Server, opts...)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ParseRecord(bRec.Serialize())
	if err != nil {
		t.Fatalf("we reject bytemare's record: %v", err)
	}
	return interopUser{id: id, password: password, ids: ids, record: rec, key: key, exportKey: exportKey}
}

// loginWithBytemare runs one login of bytemare's client against our server.
// It returns the client's error (nil if it produced KE3), and the server's
// Finish error for the KE3 the client sent (or for a random KE3 when the
// client gave up, as an attacker without the password would send).
func loginWithBytemare(t testing.TB, conf *bytemare.Configuration, keys ServerKeys, u interopUser, password []byte, ids Identities, serverContext []byte, opts ...*bytemare.ClientOptions) (clientErr, serverErr error, clientSession, serverSession, exportKey []byte) {
	t.Helper()
	c := bytemareClient(t, conf)
	ke1, err := c.GenerateKE1(password)
	if err != nil {
		t.Fatal(err)
	}
	ke2, st, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1.Serialize(), ids, serverContext)
	if err != nil {
		t.Fatalf("GenerateKE2 on bytemare's KE1: %v", err)
	}
	if len(ke2) != KE2Size {
		t.Fatalf("KE2 is %d bytes", len(ke2))
	}
	bKE2, err := c.Deserialize.KE2(ke2)
	if err != nil {
		t.Fatalf("bytemare cannot parse our KE2: %v", err)
	}
	ke3 := make([]byte, KE3Size)
	ke3msg, clientSession, exportKey, clientErr := c.GenerateKE3(bKE2, ids.Client, ids.Server, opts...)
	if clientErr == nil {
		ke3 = ke3msg.Serialize()
	} else if _, err := rand.Read(ke3); err != nil {
		t.Fatal(err)
	}
	serverSession, serverErr = st.Finish(ke3)
	return clientErr, serverErr, clientSession, serverSession, exportKey
}

func TestBytemareClientLogin(t *testing.T) {
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	userID := []byte("user-4711")
	for _, tc := range []struct {
		name string
		ids  Identities
	}{
		{"public keys as identities", Identities{}},
		{"client identity is the user id", Identities{Client: userID}},
		{"both identities", Identities{Client: userID, Server: []byte("coffer vault 1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := bytemareConfig(cofferContext, identityKSF)
			password := []byte("correct horse battery staple")
			u := registerWithBytemare(t, conf, keys, userID, password, tc.ids)
			for i := range 2 { // twice: the export key must be stable
				clientErr, serverErr, cs, ss, ek := loginWithBytemare(t, conf, keys, u, password, tc.ids, cofferContext)
				if clientErr != nil || serverErr != nil {
					t.Fatalf("login %d: client %v, server %v", i, clientErr, serverErr)
				}
				if len(ss) != HashSize || !bytes.Equal(cs, ss) {
					t.Fatalf("login %d: session keys differ:\nclient %x\nserver %x", i, cs, ss)
				}
				if !bytes.Equal(ek, u.exportKey) {
					t.Fatalf("login %d: export key differs from the one at registration", i)
				}
			}
		})
	}
}

func TestBytemareClientLoginFailures(t *testing.T) {
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conf := bytemareConfig(cofferContext, identityKSF)
	userID := []byte("user-1")
	ids := Identities{Client: userID}
	password := []byte("the right one")
	u := registerWithBytemare(t, conf, keys, userID, password, ids)

	check := func(t *testing.T, clientErr, serverErr error) {
		t.Helper()
		if clientErr == nil {
			t.Error("client accepted the login")
		}
		if !errors.Is(serverErr, ErrAuthentication) {
			t.Errorf("server Finish: %v, want ErrAuthentication", serverErr)
		}
	}
	t.Run("wrong password", func(t *testing.T) {
		clientErr, serverErr, _, _, _ := loginWithBytemare(t, conf, keys, u, []byte("the wrong one"), ids, cofferContext)
		check(t, clientErr, serverErr)
	})
	t.Run("wrong client identity at login", func(t *testing.T) {
		clientErr, serverErr, _, _, _ := loginWithBytemare(t, conf, keys, u, password, Identities{Client: []byte("user-2")}, cofferContext)
		check(t, clientErr, serverErr)
	})
	t.Run("server uses another context", func(t *testing.T) {
		clientErr, serverErr, _, _, _ := loginWithBytemare(t, conf, keys, u, password, ids, []byte("coffer/v0"))
		check(t, clientErr, serverErr)
	})
	t.Run("another user's OPRF key", func(t *testing.T) {
		other := u
		var err error
		if other.key, err = NewOPRFKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
		clientErr, serverErr, _, _, _ := loginWithBytemare(t, conf, keys, other, password, ids, cofferContext)
		check(t, clientErr, serverErr)
	})
	t.Run("KE3 of another login", func(t *testing.T) {
		// Two KE2s for the same user: the KE3 of one must not finish
		// the other.
		c := bytemareClient(t, conf)
		ke1, err := c.GenerateKE1(password)
		if err != nil {
			t.Fatal(err)
		}
		ke2, _, err := GenerateKE2(rand.Reader, keys, u.record, u.key, userID, ke1.Serialize(), ids, cofferContext)
		if err != nil {
			t.Fatal(err)
		}
		_, otherState, err := GenerateKE2(rand.Reader, keys, u.record, u.key, userID, ke1.Serialize(), ids, cofferContext)
		if err != nil {
			t.Fatal(err)
		}
		bKE2, err := c.Deserialize.KE2(ke2)
		if err != nil {
			t.Fatal(err)
		}
		ke3, _, _, err := c.GenerateKE3(bKE2, ids.Client, ids.Server)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := otherState.Finish(ke3.Serialize()); !errors.Is(err, ErrAuthentication) {
			t.Errorf("KE3 finished another login's state: %v", err)
		}
	})
}

func TestBytemareClientFakeRecord(t *testing.T) {
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fakeSeed := make([]byte, 64)
	if _, err := rand.Read(fakeSeed); err != nil {
		t.Fatal(err)
	}
	conf := bytemareConfig(cofferContext, identityKSF)
	userID := []byte("nobody")
	rec, key, err := FakeRecord(fakeSeed, userID)
	if err != nil {
		t.Fatal(err)
	}
	fake := interopUser{id: userID, record: rec, key: key}
	for _, password := range [][]byte{[]byte("guess 1"), []byte("guess 2"), {}} {
		clientErr, serverErr, _, _, _ := loginWithBytemare(t, conf, keys, fake, password, Identities{Client: userID}, cofferContext)
		if clientErr == nil {
			t.Errorf("client logged in to a fake record with %q", password)
		}
		if !errors.Is(serverErr, ErrAuthentication) {
			t.Errorf("server Finish on a fake record: %v", serverErr)
		}
	}
}

// TestBytemareServerPerClientOPRFKey crosses the two servers over one
// per-registration OPRF key: a record made through one server logs in
// through the other, with bytemare's ClientOPRFKey option carrying the key.
// That proves our OPRFKey encoding and evaluation match the reference.
func TestBytemareServerPerClientOPRFKey(t *testing.T) {
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conf := bytemareConfig(cofferContext, identityKSF)
	userID := []byte("user-7")
	ids := Identities{Client: userID}
	password := []byte("per-client keys")

	t.Run("registered with us, login with bytemare's server", func(t *testing.T) {
		u := registerWithBytemare(t, conf, keys, userID, password, ids)
		server := bytemareServer(t, conf, keys, nil)
		bRec, err := server.Deserialize.RegistrationRecord(u.record.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		c := bytemareClient(t, conf)
		ke1, err := c.GenerateKE1(password)
		if err != nil {
			t.Fatal(err)
		}
		ke2, out, err := server.GenerateKE2(ke1, &bytemare.ClientRecord{
			RegistrationRecord:   bRec,
			CredentialIdentifier: userID,
			ClientIdentity:       userID,
		}, &bytemare.ServerOptions{ClientOPRFKey: bytemareScalar(t, u.key[:])})
		if err != nil {
			t.Fatal(err)
		}
		ke3, session, exportKey, err := c.GenerateKE3(ke2, userID, nil)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		if err := server.LoginFinish(ke3, out.ClientMAC); err != nil {
			t.Fatalf("bytemare server: %v", err)
		}
		if !bytes.Equal(session, out.SessionSecret) || !bytes.Equal(exportKey, u.exportKey) {
			t.Error("session or export key mismatch")
		}
	})

	t.Run("registered with bytemare's server, login with us", func(t *testing.T) {
		key, err := NewOPRFKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		server := bytemareServer(t, conf, keys, nil)
		c := bytemareClient(t, conf)
		req, err := c.RegistrationInit(password)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := server.RegistrationResponse(req, userID, bytemareScalar(t, key[:]))
		if err != nil {
			t.Fatal(err)
		}
		ours, err := CreateRegistrationResponse(req.Serialize(), keys.Public, key)
		if err != nil {
			t.Fatal(err)
		}
		equalHex(t, "registration response (ours vs bytemare's)", ours, resp.Serialize())
		bRec, exportKey, err := c.RegistrationFinalize(resp, userID, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := ParseRecord(bRec.Serialize())
		if err != nil {
			t.Fatal(err)
		}
		u := interopUser{id: userID, record: rec, key: key, exportKey: exportKey}
		clientErr, serverErr, cs, ss, ek := loginWithBytemare(t, conf, keys, u, password, ids, cofferContext)
		if clientErr != nil || serverErr != nil {
			t.Fatalf("client %v, server %v", clientErr, serverErr)
		}
		if !bytes.Equal(cs, ss) || !bytes.Equal(ek, exportKey) {
			t.Error("session or export key mismatch")
		}
	})
}

// TestOurClientAgainstBytemareServer checks the test client against the
// reference server, so the client half is proven by more than the vectors.
func TestOurClientAgainstBytemareServer(t *testing.T) {
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewOPRFKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conf := bytemareConfig(cofferContext, identityKSF)
	server := bytemareServer(t, conf, keys, []byte("vault"))
	userID := []byte("user-9")
	ids := Identities{Client: userID, Server: []byte("vault")}
	password := []byte("pw")

	reg, request, err := NewClientRegistration(rand.Reader, password)
	if err != nil {
		t.Fatal(err)
	}
	bReq, err := server.Deserialize.RegistrationRequest(request)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := server.RegistrationResponse(bReq, userID, bytemareScalar(t, key[:]))
	if err != nil {
		t.Fatal(err)
	}
	rec, exportKey, err := reg.Finalize(rand.Reader, resp.Serialize(), ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	bRec, err := server.Deserialize.RegistrationRecord(rec.Bytes())
	if err != nil {
		t.Fatal(err)
	}

	login, ke1, err := NewClientLogin(rand.Reader, password)
	if err != nil {
		t.Fatal(err)
	}
	bKE1, err := server.Deserialize.KE1(ke1)
	if err != nil {
		t.Fatal(err)
	}
	ke2, out, err := server.GenerateKE2(bKE1, &bytemare.ClientRecord{
		RegistrationRecord: bRec, CredentialIdentifier: userID, ClientIdentity: userID,
	}, &bytemare.ServerOptions{ClientOPRFKey: bytemareScalar(t, key[:])})
	if err != nil {
		t.Fatal(err)
	}
	ke3, session, exportAgain, err := login.Finish(ke2.Serialize(), ids, cofferContext, nil)
	if err != nil {
		t.Fatal(err)
	}
	bKE3, err := server.Deserialize.KE3(ke3)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.LoginFinish(bKE3, out.ClientMAC); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(session, out.SessionSecret) || !bytes.Equal(exportKey, exportAgain) {
		t.Error("session or export key mismatch")
	}
}

// TestBytemareArgon2id checks the KeyStretch hook against bytemare's
// Argon2id KSF with cheap parameters (1 pass, 64 KiB, 1 lane): a record
// registered by bytemare's client opens with our client and the same
// stretch, and a mismatched stretch fails.
func TestBytemareArgon2id(t *testing.T) {
	const passes, memoryKiB, lanes = 1, 64, 1
	cheap := &bytemare.ClientOptions{KSFParameters: []uint64{passes, memoryKiB, lanes}}
	stretch := func(oprfOutput []byte) []byte {
		return argon2.IDKey(oprfOutput, nil, passes, memoryKiB, lanes, 32)
	}
	keys, err := GenerateServerKeys(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	conf := bytemareConfig(cofferContext, ksf.Argon2id)
	userID := []byte("user-argon")
	ids := Identities{Client: userID}
	password := []byte("stretched")
	u := registerWithBytemare(t, conf, keys, userID, password, ids, cheap)

	for _, tc := range []struct {
		name    string
		stretch KeyStretch
		wantOK  bool
	}{
		{"same Argon2id", stretch, true},
		{"identity stretch", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			login, ke1, err := NewClientLogin(rand.Reader, password)
			if err != nil {
				t.Fatal(err)
			}
			ke2, st, err := GenerateKE2(rand.Reader, keys, u.record, u.key, userID, ke1, ids, cofferContext)
			if err != nil {
				t.Fatal(err)
			}
			ke3, session, exportKey, err := login.Finish(ke2, ids, cofferContext, tc.stretch)
			if !tc.wantOK {
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("client: %v, want ErrAuthentication", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			serverSession, err := st.Finish(ke3)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(session, serverSession) || !bytes.Equal(exportKey, u.exportKey) {
				t.Error("session or export key mismatch")
			}
		})
	}
	// And bytemare's own client logs in with the same cheap parameters.
	clientErr, serverErr, cs, ss, _ := loginWithBytemare(t, conf, keys, u, password, ids, cofferContext, cheap)
	if clientErr != nil || serverErr != nil || !bytes.Equal(cs, ss) {
		t.Fatalf("bytemare Argon2id login: client %v, server %v", clientErr, serverErr)
	}
}

// TestBytemareServerSameKE2 gives both servers the same keys, record, OPRF
// key, KE1 and randomness: the KE2s must be identical byte for byte, with
// a client identity and the Coffer context.
func TestBytemareServerSameKE2(t *testing.T) {
	fx := newLoginFixture(t)
	conf := bytemareConfig(fx.context, identityKSF)
	server := bytemareServer(t, conf, fx.keys, nil)
	ke1, err := server.Deserialize.KE1(fx.ke1)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := server.Deserialize.RegistrationRecord(fx.user.record.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ke2, out, err := server.GenerateKE2(ke1, &bytemare.ClientRecord{
		RegistrationRecord:   rec,
		CredentialIdentifier: fx.user.id,
		ClientIdentity:       fx.ids.Client,
	}, &bytemare.ServerOptions{
		ClientOPRFKey: bytemareScalar(t, fx.user.key[:]),
		MaskingNonce:  fx.randomness.MaskingNonce[:],
		AKE: &bytemare.AKEOptions{
			SecretKeyShareSeed: fx.randomness.ServerKeyshareSeed[:],
			Nonce:              fx.randomness.ServerNonce[:],
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	equalHex(t, "KE2 (bytemare vs ours)", ke2.Serialize(), fx.ke2)
	equalHex(t, "session key (bytemare vs ours)", out.SessionSecret, fx.session)
	equalHex(t, "expected client MAC (bytemare) vs KE3", out.ClientMAC, fx.ke3)
}
