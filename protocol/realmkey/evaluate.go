package realmkey

import (
	"crypto"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/zk/dleq"
)

// dleqParams are exactly those circl's oprf passes for this suite
// (getDLEQParams): the proof is RFC 9497's GenerateProof/VerifyProof.
var dleqParams = dleq.Params{G: suite, H: crypto.SHA512, DST: []byte(ContextString)}

// EvaluateBlinded is a realm's evaluation (REALMS.md 5.3): E = share·Bl and
// the DLEQ proof that log_G(share·G) = log_Bl(E) (RFC 9497's proof, made by
// proveEvaluation). It refuses a zero or non-canonical share and an
// identity or undecodable Bl.
func EvaluateBlinded(share, blinded []byte) (evaluated, proof []byte, err error) {
	return evaluateBlinded(share, blinded, nil)
}

// EvaluateBlindedWithRandomness is EvaluateBlinded with the proof nonce ρ
// given, for vectors (circl's ristretto255 ignores any io.Reader). ρ must be
// nonzero and must never repeat for one share: two proofs with one ρ reveal
// the share.
func EvaluateBlindedWithRandomness(share, blinded []byte, rho group.Scalar) (evaluated, proof []byte, err error) {
	if !usableScalar(rho) {
		return nil, nil, fmt.Errorf("%w: proof randomness", ErrZeroScalar)
	}
	return evaluateBlinded(share, blinded, rho)
}

func evaluateBlinded(share, blinded []byte, rho group.Scalar) (evaluated, proof []byte, err error) {
	k, err := decodeScalar(share)
	if err != nil {
		return nil, nil, fmt.Errorf("share: %w", err)
	}
	defer k.SetUint64(0)
	bl, err := decodeElement(blinded)
	if err != nil {
		return nil, nil, fmt.Errorf("blinded element: %w", err)
	}
	y := suite.NewElement().MulGen(k)
	e := suite.NewElement().Mul(bl, k)
	return mustMarshal(e), proveEvaluation(k, y, bl, e, rho), nil
}
