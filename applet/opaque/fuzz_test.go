package opaque

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzFixture is one fixed, valid login from RFC 9807's first real vector:
// the seeds of every fuzz target are its messages, so the fuzzer starts from
// inputs that get past the length checks.
type fuzzFixture struct {
	keys         ServerKeys
	record       Record
	key          OPRFKey
	credentialID []byte
	context      []byte
	randomness   KE2Randomness
	request      []byte
	ke1          []byte
	ke2          []byte
	ke3          []byte
	sessionKey   []byte
	password     []byte
	blindLogin   []byte
	clientNonce  []byte
	clientSeed   []byte
}

func newFuzzFixture(t testing.TB) *fuzzFixture {
	t.Helper()
	real, _ := loadRFCVectors(t)
	v := real[0]
	in, out := v.Inputs, v.Outputs
	fx := &fuzzFixture{
		keys: ServerKeys{
			Private: array32(t, field(t, in, "server_private_key")),
			Public:  array32(t, field(t, in, "server_public_key")),
		},
		credentialID: field(t, in, "credential_identifier"),
		context:      v.Context,
		randomness: KE2Randomness{
			MaskingNonce:       array32(t, field(t, in, "masking_nonce")),
			ServerNonce:        array32(t, field(t, in, "server_nonce")),
			ServerKeyshareSeed: array32(t, field(t, in, "server_keyshare_seed")),
		},
		request:     field(t, out, "registration_request"),
		ke1:         field(t, out, "KE1"),
		ke2:         field(t, out, "KE2"),
		ke3:         field(t, out, "KE3"),
		sessionKey:  field(t, out, "session_key"),
		password:    field(t, in, "password"),
		blindLogin:  field(t, in, "blind_login"),
		clientNonce: field(t, in, "client_nonce"),
		clientSeed:  field(t, in, "client_keyshare_seed"),
	}
	var err error
	if fx.record, err = ParseRecord(field(t, out, "registration_upload")); err != nil {
		t.Fatal(err)
	}
	if fx.key, err = DeriveOPRFKey(field(t, in, "oprf_seed"), fx.credentialID); err != nil {
		t.Fatal(err)
	}
	return fx
}

func FuzzValidateKE1(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.ke1)
	f.Add(make([]byte, KE1Size))
	f.Add(fx.ke1[:KE1Size-1])
	f.Fuzz(func(t *testing.T, ke1 []byte) {
		validErr := ValidateKE1(ke1)
		ke2, st, err := GenerateKE2Deterministic(fx.keys, fx.record, fx.key, fx.credentialID, ke1, Identities{}, fx.context, fx.randomness)
		// GenerateKE2 must accept exactly what ValidateKE1 accepts:
		// the vault counts a guess on ValidateKE1's word.
		if (validErr == nil) != (err == nil) {
			t.Fatalf("ValidateKE1 says %v, GenerateKE2 says %v", validErr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidElement) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(ke2) != KE2Size || st == nil {
			t.Fatalf("KE2 is %d bytes", len(ke2))
		}
		if bytes.Equal(ke1, fx.ke1) != bytes.Equal(ke2, fx.ke2) {
			t.Fatal("KE2 matches the vector for a different KE1, or differs for the same")
		}
	})
}

func FuzzCreateRegistrationResponse(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.request)
	f.Add(make([]byte, RegistrationRequestSize))
	f.Add(bytes.Repeat([]byte{0xff}, RegistrationRequestSize))
	f.Fuzz(func(t *testing.T, request []byte) {
		resp, err := CreateRegistrationResponse(request, fx.keys.Public, fx.key)
		if err != nil {
			if resp != nil {
				t.Fatal("output with an error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidElement) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(resp) != RegistrationResponseSize || !bytes.Equal(resp[ElementSize:], fx.keys.Public[:]) {
			t.Fatal("malformed response")
		}
		if _, err := decodeElement(resp[:ElementSize], "evaluated"); err != nil {
			t.Fatalf("evaluated element invalid: %v", err)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.record.Bytes())
	f.Add(make([]byte, RecordSize))
	f.Add(fx.record.Bytes()[:RecordSize-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := ParseRecord(b)
		if err != nil {
			if rec != (Record{}) {
				t.Fatal("partial record with an error")
			}
			return
		}
		if !bytes.Equal(rec.Bytes(), b) {
			t.Fatal("record does not round-trip")
		}
	})
}

func FuzzFinish(f *testing.F) {
	fx := newFuzzFixture(f)
	// The state the RFC vector's KE2 leaves, rebuilt deterministically.
	_, template, err := GenerateKE2Deterministic(fx.keys, fx.record, fx.key, fx.credentialID, fx.ke1, Identities{}, fx.context, fx.randomness)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fx.ke3)
	f.Add(make([]byte, KE3Size))
	f.Add(fx.ke3[:KE3Size-1])
	f.Fuzz(func(t *testing.T, ke3 []byte) {
		st := &ServerState{expectedClientMAC: template.expectedClientMAC, sessionKey: template.sessionKey}
		session, err := st.Finish(ke3)
		if bytes.Equal(ke3, fx.ke3) {
			if err != nil || !bytes.Equal(session, fx.sessionKey) {
				t.Fatalf("valid KE3 refused: %v", err)
			}
		} else if err == nil {
			t.Fatal("forged KE3 accepted")
		}
		if _, err := st.Finish(fx.ke3); !errors.Is(err, ErrStateUsed) {
			t.Fatalf("second Finish: %v", err)
		}
	})
}

// FuzzClientFinish feeds the test client arbitrary KE2s: it parses outside
// bytes too, and must fail cleanly on all but the real one.
func FuzzClientFinish(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.ke2)
	f.Add(make([]byte, KE2Size))
	f.Fuzz(func(t *testing.T, ke2 []byte) {
		c, ke1, err := NewClientLogin(script(fx.blindLogin, fx.clientNonce, fx.clientSeed), fx.password)
		if err != nil || !bytes.Equal(ke1, fx.ke1) {
			t.Fatalf("client did not replay the vector's KE1: %v", err)
		}
		ke3, _, _, err := c.Finish(ke2, Identities{}, fx.context, nil)
		if bytes.Equal(ke2, fx.ke2) {
			if err != nil || !bytes.Equal(ke3, fx.ke3) {
				t.Fatalf("valid KE2 refused: %v", err)
			}
		} else if err == nil {
			t.Fatal("forged KE2 accepted")
		}
	})
}

// TestFuzzSeedsMeaningful keeps the fixture honest outside fuzzing: the
// vector KE1 must produce the vector KE2 through the deterministic path.
func TestFuzzSeedsMeaningful(t *testing.T) {
	fx := newFuzzFixture(t)
	ke2, st, err := GenerateKE2Deterministic(fx.keys, fx.record, fx.key, fx.credentialID, fx.ke1, Identities{}, fx.context, fx.randomness)
	if err != nil || !bytes.Equal(ke2, fx.ke2) {
		t.Fatalf("fixture KE2 mismatch: %v", err)
	}
	if s, err := st.Finish(fx.ke3); err != nil || !bytes.Equal(s, fx.sessionKey) {
		t.Fatalf("fixture KE3: %v", err)
	}
}
