package realmkey

import (
	"crypto/rand"
	"fmt"

	"github.com/cloudflare/circl/group"
)

// Dealing is what a registering client computes (REALMS.md 5.2): the
// version's root key k, shared as f(x) = k + a_1·x + … + a_{t−1}·x^{t−1}.
// Shares[i−1] is realm i's share f(i), 32 bytes; Commitments[j] is
// a_j·G (C_0 = k·G). The root key never leaves the Dealing; Wipe it, and
// the shares, as soon as the version's material is sent.
type Dealing struct {
	Threshold, N int
	Commitments  [][]byte
	Shares       [][]byte
	root         group.Scalar
}

// checkShape enforces 2 ≤ n ≤ MaxRealms and n/2 < t ≤ n (REALMS.md 3 and
// 4 rule 4): two sets of t realms always share a realm.
func checkShape(t, n int) error {
	if n < 2 || n > MaxRealms || t > n || 2*t <= n {
		return fmt.Errorf("%w (t = %d, n = %d)", ErrThreshold, t, n)
	}
	return nil
}

// Deal draws a fresh root key and polynomial for a t-of-n set. Every
// coefficient is a random nonzero scalar: a zero top coefficient would lower
// the degree so that t − 1 realms held k, and any zero coefficient would
// make its commitment the identity, which realms refuse.
func Deal(t, n int) (*Dealing, error) {
	if err := checkShape(t, n); err != nil {
		return nil, err
	}
	coeffs := make([]group.Scalar, t)
	for j := range coeffs {
		coeffs[j] = suite.RandomNonZeroScalar(rand.Reader)
	}
	defer wipeScalars(coeffs)
	return DealFromCoefficients(coeffs, n)
}

// DealFromCoefficients shares coeffs[0] = k with the polynomial whose
// coefficients are coeffs (t = len(coeffs)), for vectors. The same checks as
// Deal apply: every coefficient nonzero, and no share zero. The caller keeps
// ownership of coeffs (and should wipe them).
func DealFromCoefficients(coeffs []group.Scalar, n int) (*Dealing, error) {
	t := len(coeffs)
	if err := checkShape(t, n); err != nil {
		return nil, err
	}
	for j, a := range coeffs {
		if !usableScalar(a) {
			return nil, fmt.Errorf("%w: coefficient a_%d", ErrZeroScalar, j)
		}
	}
	d := &Dealing{
		Threshold:   t,
		N:           n,
		Commitments: make([][]byte, t),
		Shares:      make([][]byte, n),
		root:        coeffs[0].Copy(),
	}
	for j, a := range coeffs {
		d.Commitments[j] = mustMarshal(suite.NewElement().MulGen(a))
	}
	for i := 1; i <= n; i++ {
		share := evalPoly(coeffs, scalarOf(i))
		if share.IsZero() {
			d.Wipe()
			return nil, fmt.Errorf("%w: share of realm %d", ErrZeroScalar, i)
		}
		d.Shares[i-1] = mustMarshalScalar(share)
		share.SetUint64(0)
	}
	return d, nil
}

// evalPoly is f(x) by Horner's rule.
func evalPoly(coeffs []group.Scalar, x group.Scalar) group.Scalar {
	acc := suite.NewScalar()
	for j := len(coeffs) - 1; j >= 0; j-- {
		acc.Mul(acc, x)
		acc.Add(acc, coeffs[j])
	}
	return acc
}

// Evaluate is RFC 9497 Evaluate under the root key: the y that t realms'
// evaluations give a client with the right password (REALMS.md 5.2).
func (d *Dealing) Evaluate(input []byte) ([]byte, error) {
	if d.root == nil || d.root.IsZero() {
		return nil, fmt.Errorf("%w: the dealing was wiped", ErrZeroScalar)
	}
	p, err := hashToGroup(input)
	if err != nil {
		return nil, err
	}
	return finalizeHash(input, p.Mul(p, d.root)), nil
}

// Wipe zeroes the root key and the shares. The commitments are public and
// stay.
func (d *Dealing) Wipe() {
	if d.root != nil {
		d.root.SetUint64(0)
	}
	for _, s := range d.Shares {
		wipe(s)
	}
}

func wipeScalars(s []group.Scalar) {
	for _, x := range s {
		if x != nil {
			x.SetUint64(0)
		}
	}
}

// PublicShare is realm index's public share Y_i = Σ_j x_i^j·C_j
// (REALMS.md 5.2), from the manifest's commitments. It refuses an index
// outside 1..MaxRealms, a commitment list of the wrong size, a commitment
// that is not a canonical element or is the identity, and an identity Y_i.
// The caller checks len(commitments) = t against the manifest.
func PublicShare(commitments [][]byte, index int) ([]byte, error) {
	y, err := publicShare(commitments, index)
	if err != nil {
		return nil, err
	}
	return mustMarshal(y), nil
}

func publicShare(commitments [][]byte, index int) (group.Element, error) {
	y, err := sumCommitments(commitments, index)
	if err != nil {
		return nil, err
	}
	if y.IsIdentity() {
		return nil, fmt.Errorf("public share Y_%d: %w", index, ErrIdentity)
	}
	return y, nil
}

// sumCommitments is Σ_j x_i^j·C_j with every commitment decoded and checked,
// but the sum itself not yet checked against the identity.
func sumCommitments(commitments [][]byte, index int) (group.Element, error) {
	if index < 1 || index > MaxRealms {
		return nil, fmt.Errorf("%w: index %d", ErrIndex, index)
	}
	if len(commitments) < 2 || len(commitments) > MaxRealms {
		return nil, fmt.Errorf("%w: %d commitments", ErrThreshold, len(commitments))
	}
	x := scalarOf(index)
	xj := suite.NewScalar().SetUint64(1)
	y := suite.Identity()
	for j, enc := range commitments {
		c, err := decodeElement(enc)
		if err != nil {
			return nil, fmt.Errorf("commitment C_%d: %w", j, err)
		}
		y.Add(y, c.Mul(c, xj))
		xj.Mul(xj, x)
	}
	return y, nil
}

// CheckShare is what a realm does at registration (REALMS.md 5.5): its share
// must be a canonical nonzero scalar with share·G = Y_index. The checks run
// in REALMS.md 7's order: the commitments decode and none is the identity;
// the share decodes canonically and is nonzero; Y_index is not the identity;
// share·G = Y_index. So a zero share is refused as ErrZeroScalar, although
// its Y_index is also the identity.
func CheckShare(commitments [][]byte, index int, share []byte) error {
	y, err := sumCommitments(commitments, index)
	if err != nil {
		return err
	}
	k, err := decodeScalar(share)
	if err != nil {
		return fmt.Errorf("share: %w", err)
	}
	defer k.SetUint64(0)
	if y.IsIdentity() {
		return fmt.Errorf("public share Y_%d: %w", index, ErrIdentity)
	}
	if !suite.NewElement().MulGen(k).IsEqual(y) {
		return ErrShare
	}
	return nil
}
