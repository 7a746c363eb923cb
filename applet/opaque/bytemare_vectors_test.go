package opaque

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
	"golang.org/x/crypto/argon2"
)

// testdata/vectors holds Coffer's OPAQUE configuration's vectors, one file
// per step of a registration and a login, with the outcome each must reach.
// gen_opaque.go wrote them with bytemare/opaque and fixed randomness, not
// with this package; this test needs no bytemare, so it also runs on
// 32-bit ARM, where bytemare does not build.
const bytemareVectorDir = "testdata/vectors"

// vectorStretch is the key stretch a case names (protocol/SPEC.md, "OPAQUE").
func vectorStretch(t *testing.T, c *vectorfile.Case) KeyStretch {
	switch c.Header["ksf"] {
	case "identity":
		return nil
	case "argon2id":
		return func(oprfOutput []byte) []byte { return argon2.IDKey(oprfOutput, nil, 3, 64*1024, 4, 32) }
	}
	t.Fatalf("unknown ksf %q", c.Header["ksf"])
	return nil
}

// vectorOutcome names err as the vector files do.
func vectorOutcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, ErrAuthentication):
		return "authentication"
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrInvalidElement):
		return "malformed"
	}
	return "unexpected error: " + err.Error()
}

// scripted is the randomness a case fixes, in the order the code draws it;
// a draw beyond it fails.
func scripted(parts ...[]byte) *bytes.Reader { return bytes.NewReader(bytes.Join(parts, nil)) }

func vectorServerKeys(t *testing.T, c *vectorfile.Case) ServerKeys {
	var k ServerKeys
	copy(k.Private[:], c.Hex(t, "server-private-key"))
	copy(k.Public[:], c.Hex(t, "server-public-key"))
	if err := k.Validate(); err != nil {
		t.Fatalf("the case's server keys: %v", err)
	}
	return k
}

func vectorOPRFKey(t *testing.T, c *vectorfile.Case) OPRFKey {
	var k OPRFKey
	copy(k[:], c.Hex(t, "oprf-key"))
	return k
}

// vectorKE2 is the server's KE2 to ke1 with the case's keys, record and
// randomness.
func vectorKE2(t *testing.T, c *vectorfile.Case, ke1 []byte) ([]byte, *ServerState, error) {
	rec, err := ParseRecord(c.Hex(t, "record"))
	if err != nil {
		t.Fatalf("the case's record: %v", err)
	}
	var r KE2Randomness
	copy(r.MaskingNonce[:], c.Hex(t, "masking-nonce"))
	copy(r.ServerNonce[:], c.Hex(t, "server-nonce"))
	copy(r.ServerKeyshareSeed[:], c.Hex(t, "server-keyshare-seed"))
	user := c.Hex(t, "user-id")
	return GenerateKE2Deterministic(vectorServerKeys(t, c), rec, vectorOPRFKey(t, c), user, ke1,
		Identities{Client: user}, c.Hex(t, "context"), r)
}

func equalOutput(t *testing.T, c *vectorfile.Case, name string, got []byte) {
	t.Helper()
	if want := c.Hex(t, name); !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", name, got, want)
	}
}

// TestBytemareVectors walks every case and checks that this package reaches
// exactly its outcome, and on success exactly its outputs, byte for byte:
// the client half with the case's blinds, nonces and seeds fed as its
// randomness, the server half with the case's randomness.
func TestBytemareVectors(t *testing.T) {
	cases := vectorfile.Load(t, bytemareVectorDir)
	counts := map[string]int{}
	for i := range cases {
		c := &cases[i]
		counts[c.Expect]++
		t.Run(c.Path, func(t *testing.T) {
			var err error
			switch step := c.Header["step"]; step {
			case "registration-response":
				var resp []byte
				var pub [ElementSize]byte
				copy(pub[:], c.Hex(t, "server-public-key"))
				if resp, err = CreateRegistrationResponse(c.Data, pub, vectorOPRFKey(t, c)); err == nil {
					equalOutput(t, c, "registration-response", resp)
				}
			case "registration-finalize":
				reg, request, rerr := NewClientRegistration(scripted(c.Hex(t, "blind")), c.Hex(t, "password"))
				if rerr != nil {
					t.Fatal(rerr)
				}
				_ = request // the registration-response case holds it
				var rec Record
				var exportKey []byte
				user := c.Hex(t, "user-id")
				rec, exportKey, err = reg.Finalize(scripted(c.Hex(t, "envelope-nonce")), c.Data, Identities{Client: user}, vectorStretch(t, c))
				if err == nil {
					equalOutput(t, c, "record", rec.Bytes())
					equalOutput(t, c, "export-key", exportKey)
				}
			case "ke1":
				_, ke1, kerr := NewClientLogin(scripted(c.Hex(t, "blind"), c.Hex(t, "client-nonce"), c.Hex(t, "client-keyshare-seed")), c.Hex(t, "password"))
				if err = kerr; err == nil && !bytes.Equal(ke1, c.Data) {
					t.Errorf("KE1 %x", ke1)
				}
			case "ke2":
				var ke2 []byte
				if ke2, _, err = vectorKE2(t, c, c.Data); err == nil {
					equalOutput(t, c, "ke2", ke2)
				}
			case "ke3":
				login, _, lerr := NewClientLogin(scripted(c.Hex(t, "blind"), c.Hex(t, "client-nonce"), c.Hex(t, "client-keyshare-seed")), c.Hex(t, "password"))
				if lerr != nil {
					t.Fatal(lerr)
				}
				user := c.Hex(t, "user-id")
				var ke3, session, exportKey []byte
				ke3, session, exportKey, err = login.Finish(c.Data, Identities{Client: user}, c.Hex(t, "context"), vectorStretch(t, c))
				if err == nil {
					equalOutput(t, c, "ke3", ke3)
					equalOutput(t, c, "session-key", session)
					equalOutput(t, c, "export-key", exportKey)
				}
			case "finish":
				_, st, kerr := vectorKE2(t, c, c.Hex(t, "ke1"))
				if kerr != nil {
					t.Fatalf("KE2 for the case's KE1: %v", kerr)
				}
				var session []byte
				if session, err = st.Finish(c.Data); err == nil {
					equalOutput(t, c, "session-key", session)
				}
			default:
				t.Fatalf("unknown step %q", step)
			}
			if got := vectorOutcome(err); got != c.Expect {
				t.Errorf("got %s (%v), the vector expects %s: %v", got, err, c.Expect, c.Comments)
			}
		})
	}
	if counts["success"] == 0 || counts["authentication"] == 0 || counts["malformed"] == 0 {
		t.Errorf("outcomes %v: the vectors need successes and both kinds of failure", counts)
	}
}
