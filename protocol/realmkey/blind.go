package realmkey

import (
	"crypto/rand"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/zk/dleq"
)

// Blind is a client's blinding of one input (RFC 9497 Blind): the secret r
// and Bl = r·HashToGroup(input), which is sent to the realms.
type Blind struct {
	r  group.Scalar
	bl []byte
}

// NewBlind draws a random nonzero r and blinds input.
func NewBlind(input []byte) (*Blind, error) {
	return DeterministicBlind(input, suite.RandomNonZeroScalar(rand.Reader))
}

// DeterministicBlind blinds input with the given r, for vectors. r must be
// nonzero; the Blind keeps its own copy.
func DeterministicBlind(input []byte, r group.Scalar) (*Blind, error) {
	if !usableScalar(r) {
		return nil, fmt.Errorf("%w: blind", ErrZeroScalar)
	}
	p, err := hashToGroup(input)
	if err != nil {
		return nil, err
	}
	bl := p.Mul(p, r)
	if bl.IsIdentity() {
		return nil, ErrIdentity
	}
	return &Blind{r: r.Copy(), bl: mustMarshal(bl)}, nil
}

// Blinded is Bl, the 32 bytes sent to every realm.
func (b *Blind) Blinded() []byte { return append([]byte(nil), b.bl...) }

// Wipe zeroes r; the Blind can no longer finalize.
func (b *Blind) Wipe() {
	if b.r != nil {
		b.r.SetUint64(0)
	}
}

// VerifyEvaluation checks a realm's answer against its public share Y_i
// (from PublicShare on the agreed manifest) and the Bl this client sent:
// RFC 9497 VerifyProof for (G, Y_i, Bl, E_i). An identity E_i is ErrIdentity,
// a proof that fails is ErrProof.
func VerifyEvaluation(publicShare, blinded, evaluated, proof []byte) error {
	y, err := decodeElement(publicShare)
	if err != nil {
		return fmt.Errorf("public share: %w", err)
	}
	bl, err := decodeElement(blinded)
	if err != nil {
		return fmt.Errorf("blinded element: %w", err)
	}
	e, err := decodeElement(evaluated)
	if err != nil {
		return fmt.Errorf("evaluated element: %w", err)
	}
	if len(proof) != ProofSize {
		return fmt.Errorf("proof: %w", ErrEncoding)
	}
	var pi dleq.Proof
	if err := pi.UnmarshalBinary(suite, proof); err != nil {
		return fmt.Errorf("proof: %w", ErrEncoding)
	}
	if !(dleq.Verifier{Params: dleqParams}).VerifyBatchRFC9497(y, []group.Element{bl}, []group.Element{e}, &pi) {
		return ErrProof
	}
	return nil
}

// Finalize combines t verified evaluations into y (REALMS.md 5.3):
// E = Σ λ_i·E_i = k·Bl, N = r^{−1}·E, and RFC 9497's Finalize hash of
// input and N. indices[m] is the realm index of evaluations[m]. The caller
// must have verified every evaluation (VerifyEvaluation) and pass exactly the
// manifest's t of them: Finalize cannot tell a wrong y from a right one.
// Indices are checked (distinct, in 1..MaxRealms) before any inversion.
func (b *Blind) Finalize(input []byte, indices []int, evaluations [][]byte) ([]byte, error) {
	if len(indices) != len(evaluations) {
		return nil, fmt.Errorf("%w: %d indices for %d evaluations", ErrIndex, len(indices), len(evaluations))
	}
	if b.r == nil || b.r.IsZero() {
		return nil, fmt.Errorf("%w: the blind was wiped", ErrZeroScalar)
	}
	if len(input) > maxInputSize {
		return nil, fmt.Errorf("realmkey: input longer than %d bytes", maxInputSize)
	}
	lambda, err := Lagrange(indices)
	if err != nil {
		return nil, err
	}
	sum := suite.Identity()
	for m, enc := range evaluations {
		e, err := decodeElement(enc)
		if err != nil {
			return nil, fmt.Errorf("evaluation of realm %d: %w", indices[m], err)
		}
		sum.Add(sum, e.Mul(e, lambda[m]))
	}
	rInv := suite.NewScalar().Inv(b.r)
	defer rInv.SetUint64(0)
	n := sum.Mul(sum, rInv)
	if n.IsIdentity() {
		return nil, fmt.Errorf("unblinded element: %w", ErrIdentity)
	}
	return finalizeHash(input, n), nil
}

// Lagrange returns λ_i = Π_{j≠i} x_j·(x_j − x_i)^{−1}, the coefficients at 0
// for the given realm indices, in their order. It refuses fewer than 2 or
// more than MaxRealms indices, an index outside 1..MaxRealms and a repeated
// index before inverting anything (circl's Inv(0) is 0, not an error), and
// rejects a zero difference again at the inversion.
func Lagrange(indices []int) ([]group.Scalar, error) {
	if len(indices) < 2 || len(indices) > MaxRealms {
		return nil, fmt.Errorf("%w: %d indices", ErrIndex, len(indices))
	}
	var seen [MaxRealms + 1]bool
	for _, i := range indices {
		if i < 1 || i > MaxRealms {
			return nil, fmt.Errorf("%w: index %d", ErrIndex, i)
		}
		if seen[i] {
			return nil, fmt.Errorf("%w: index %d repeated", ErrIndex, i)
		}
		seen[i] = true
	}
	out := make([]group.Scalar, len(indices))
	for m, i := range indices {
		num := suite.NewScalar().SetUint64(1)
		den := suite.NewScalar().SetUint64(1)
		xi := scalarOf(i)
		for m2, j := range indices {
			if m2 == m {
				continue // by position, so a repeated index meets the zero check
			}
			xj := scalarOf(j)
			diff := suite.NewScalar().Sub(xj, xi)
			if diff.IsZero() {
				return nil, fmt.Errorf("%w: indices %d and %d coincide", ErrIndex, i, j)
			}
			num.Mul(num, xj)
			den.Mul(den, diff)
		}
		out[m] = num.Mul(num, den.Inv(den))
	}
	return out, nil
}
