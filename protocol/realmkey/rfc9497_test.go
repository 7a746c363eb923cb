package realmkey

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/cloudflare/circl/group"
)

// RFC 9497, Appendix A.1.2 (VOPRF mode, ristretto255-SHA512), test vector 1.
// Facts from the RFC: they pin the context string, HashToGroup, the blind,
// the proof transcript with its randomness, and Finalize, independently of
// circl's oprf package.
const (
	rfcSkSm      = "e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909"
	rfcPkSm      = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e"
	rfcInput     = "00"
	rfcBlind     = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"
	rfcBlinded   = "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945"
	rfcEvaluated = "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e"
	rfcProof     = "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd066d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d"
	rfcProofR    = "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e"
	rfcOutput    = "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRFC9497VerifiableVector(t *testing.T) {
	sk := unhex(t, rfcSkSm)
	input := unhex(t, rfcInput)
	blind, err := DeterministicBlind(input, mustScalar(t, unhex(t, rfcBlind)))
	if err != nil {
		t.Fatal(err)
	}
	if got := blind.Blinded(); !bytes.Equal(got, unhex(t, rfcBlinded)) {
		t.Fatalf("Bl = %x, RFC %s", got, rfcBlinded)
	}
	e, proof, err := EvaluateBlindedWithRandomness(sk, blind.Blinded(), mustScalar(t, unhex(t, rfcProofR)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e, unhex(t, rfcEvaluated)) || !bytes.Equal(proof, unhex(t, rfcProof)) {
		t.Fatalf("E, proof = %x, %x; RFC %s, %s", e, proof, rfcEvaluated, rfcProof)
	}
	if err := VerifyEvaluation(unhex(t, rfcPkSm), blind.Blinded(), e, proof); err != nil {
		t.Fatalf("the RFC's proof does not verify: %v", err)
	}

	// Finalize, through a 2-of-2 dealing whose root key is skS: the
	// combined output of both realms and Dealing.Evaluate are the RFC's.
	coeffs := []group.Scalar{mustScalar(t, sk), fixedScalar(t, "rfc a_1")}
	d, err := DealFromCoefficients(coeffs, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Commitments[0], unhex(t, rfcPkSm)) {
		t.Fatalf("C_0 = %x, RFC pkS %s", d.Commitments[0], rfcPkSm)
	}
	if got, err := d.Evaluate(input); err != nil || !bytes.Equal(got, unhex(t, rfcOutput)) {
		t.Fatalf("Dealing.Evaluate = %x, %v; RFC %s", got, err, rfcOutput)
	}
	evals := evaluateAll(t, d, blind.Blinded())
	if got, err := blind.Finalize(input, []int{1, 2}, evals); err != nil || !bytes.Equal(got, unhex(t, rfcOutput)) {
		t.Fatalf("Finalize = %x, %v; RFC %s", got, err, rfcOutput)
	}
}
