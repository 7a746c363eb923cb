package realmkey

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/zk/dleq"
)

// The hand-written prover gives, for the same ρ, exactly the proof circl's
// RFC 9497 prover gives (the RFC's own vector is TestRFC9497VerifiableVector),
// and circl's verifier accepts its proofs with random ρ.
func TestProverMatchesCirclsRFC9497Prover(t *testing.T) {
	circl := dleq.Prover{Params: dleqParams}
	verifier := dleq.Verifier{Params: dleqParams}
	for range 64 {
		k := suite.RandomScalar(rand.Reader)
		y := suite.NewElement().MulGen(k)
		bl := suite.HashToElement(randomBytes(t, 32), []byte("test"))
		e := suite.NewElement().Mul(bl, k)
		rho := suite.RandomScalar(rand.Reader)
		want, err := circl.ProveBatchWithRandomnessRFC9497(k, y, []group.Element{bl}, []group.Element{e}, rho)
		if err != nil {
			t.Fatal(err)
		}
		wantBytes, _ := want.MarshalBinary()
		if got := proveEvaluation(k, y, bl, e, rho); !bytes.Equal(got, wantBytes) {
			t.Fatalf("proof %x, circl's %x", got, wantBytes)
		}
		var pi dleq.Proof
		if err := pi.UnmarshalBinary(suite, proveEvaluation(k, y, bl, e, nil)); err != nil {
			t.Fatal(err)
		}
		if !verifier.VerifyBatchRFC9497(y, []group.Element{bl}, []group.Element{e}, &pi) {
			t.Fatal("circl's verifier refuses a proof with random ρ")
		}
		// A proof for another evaluation does not verify.
		other := suite.NewElement().Mul(bl, suite.RandomScalar(rand.Reader))
		if verifier.VerifyBatchRFC9497(y, []group.Element{bl}, []group.Element{other}, &pi) {
			t.Fatal("a proof verifies for another evaluation")
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
