package realmkey

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cloudflare/circl/group"
)

// A realm that answers with anything but share·Bl is caught by its proof:
// another realm's E, a random E, the right E with a proof for another Bl,
// and a proof altered in one bit.
func TestLyingEvaluationFailsVerification(t *testing.T) {
	input := testInput()
	d := fixedDealing(t, "liar", 2, 3)
	blind, err := DeterministicBlind(input, fixedScalar(t, "liar blind"))
	if err != nil {
		t.Fatal(err)
	}
	bl := blind.Blinded()
	y1, err := PublicShare(d.Commitments, 1)
	if err != nil {
		t.Fatal(err)
	}
	e1, p1, err := EvaluateBlinded(d.Shares[0], bl)
	if err != nil {
		t.Fatal(err)
	}
	e2, p2, err := EvaluateBlinded(d.Shares[1], bl)
	if err != nil {
		t.Fatal(err)
	}
	other, err := DeterministicBlind(input, fixedScalar(t, "other blind"))
	if err != nil {
		t.Fatal(err)
	}
	eo, po, err := EvaluateBlinded(d.Shares[0], other.Blinded())
	if err != nil {
		t.Fatal(err)
	}
	random := mustMarshal(suite.RandomElement(nil))
	flipped := append([]byte(nil), p1...)
	flipped[3] ^= 1
	cases := map[string][2][]byte{
		"realm 2's answer as realm 1's": {e2, p2},
		"random E with realm 1's proof": {random, p1},
		"E and proof for another Bl":    {eo, po},
		"realm 1's E, flipped proof":    {e1, flipped},
	}
	for name, c := range cases {
		err := VerifyEvaluation(y1, bl, c[0], c[1])
		if !errors.Is(err, ErrProof) && !errors.Is(err, ErrEncoding) {
			t.Errorf("%s: VerifyEvaluation = %v, want ErrProof", name, err)
		}
	}
	// The honest one passes, so the refusals above are about the lie.
	if err := VerifyEvaluation(y1, bl, e1, p1); err != nil {
		t.Fatal(err)
	}
	// The lie, combined anyway, gives a wrong y: the proof is what protects.
	y, err := blind.Finalize(input, []int{1, 2}, [][]byte{e1, eo})
	if err != nil {
		t.Fatal(err)
	}
	if want := referenceOutput(t, d.root, input); bytes.Equal(y, want) {
		t.Fatal("a lying evaluation combined to the right output")
	}
}

// The identity is refused wherever it can come in: Bl at the realm, E_i at
// the client (verification and combination), every C_j, and a computed Y_i.
func TestIdentityElementsAreRefused(t *testing.T) {
	d := fixedDealing(t, "identity", 2, 3)
	blind, err := NewBlind(testInput())
	if err != nil {
		t.Fatal(err)
	}
	bl := blind.Blinded()
	y1, _ := PublicShare(d.Commitments, 1)
	e1, p1, _ := EvaluateBlinded(d.Shares[0], bl)
	e2, _, _ := EvaluateBlinded(d.Shares[1], bl)

	if _, _, err := EvaluateBlinded(d.Shares[0], identityBytes); !errors.Is(err, ErrIdentity) {
		t.Errorf("EvaluateBlinded(identity Bl) = %v", err)
	}
	if _, _, err := EvaluateBlindedWithRandomness(d.Shares[0], identityBytes, fixedScalar(t, "rho")); !errors.Is(err, ErrIdentity) {
		t.Errorf("EvaluateBlindedWithRandomness(identity Bl) = %v", err)
	}
	if err := VerifyEvaluation(y1, bl, identityBytes, p1); !errors.Is(err, ErrIdentity) {
		t.Errorf("VerifyEvaluation(identity E) = %v", err)
	}
	if err := VerifyEvaluation(identityBytes, bl, e1, p1); !errors.Is(err, ErrIdentity) {
		t.Errorf("VerifyEvaluation(identity Y) = %v", err)
	}
	if err := VerifyEvaluation(y1, identityBytes, e1, p1); !errors.Is(err, ErrIdentity) {
		t.Errorf("VerifyEvaluation(identity Bl) = %v", err)
	}
	if _, err := blind.Finalize(testInput(), []int{1, 2}, [][]byte{e1, identityBytes}); !errors.Is(err, ErrIdentity) {
		t.Errorf("Finalize with an identity E_2 = %v", err)
	}
	if _, err := blind.Finalize(testInput(), []int{1, 2}, [][]byte{e1, e2}); err != nil {
		t.Fatalf("Finalize of honest evaluations: %v", err)
	}

	for j := range d.Commitments {
		bad := append([][]byte(nil), d.Commitments...)
		bad[j] = identityBytes
		if _, err := PublicShare(bad, 1); !errors.Is(err, ErrIdentity) {
			t.Errorf("PublicShare with identity C_%d = %v", j, err)
		}
		if err := CheckShare(bad, 1, d.Shares[0]); !errors.Is(err, ErrIdentity) {
			t.Errorf("CheckShare with identity C_%d = %v", j, err)
		}
	}

	// C_0 = P, C_1 = −P: no commitment is the identity, but
	// Y_1 = C_0 + 1·C_1 is.
	p := suite.NewElement().MulGen(fixedScalar(t, "P"))
	cancel := [][]byte{mustMarshal(p), mustMarshal(suite.NewElement().Neg(p))}
	if _, err := PublicShare(cancel, 1); !errors.Is(err, ErrIdentity) {
		t.Errorf("PublicShare giving an identity Y_1 = %v", err)
	}
	if _, err := PublicShare(cancel, 2); err != nil {
		t.Errorf("PublicShare(2) of the same commitments: %v", err)
	}
	if err := CheckShare(cancel, 1, d.Shares[0]); !errors.Is(err, ErrIdentity) {
		t.Errorf("CheckShare against an identity Y_1 = %v", err)
	}
}

// A zero scalar is refused as a share (realm), blind (client), proof nonce
// and coefficient; so is a non-canonical one.
func TestZeroAndNonCanonicalScalarsAreRefused(t *testing.T) {
	d := fixedDealing(t, "zero", 2, 3)
	bl, _ := NewBlind(testInput())
	zero := make([]byte, ScalarSize)
	// ℓ itself: the first non-canonical scalar encoding.
	ell := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}

	if err := CheckShare(d.Commitments, 1, zero); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("CheckShare(zero share) = %v", err)
	}
	if err := CheckShare(d.Commitments, 1, ell); !errors.Is(err, ErrEncoding) {
		t.Errorf("CheckShare(ℓ) = %v", err)
	}
	if _, _, err := EvaluateBlinded(zero, bl.Blinded()); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("EvaluateBlinded(zero share) = %v", err)
	}
	if _, _, err := EvaluateBlinded(ell, bl.Blinded()); !errors.Is(err, ErrEncoding) {
		t.Errorf("EvaluateBlinded(ℓ) = %v", err)
	}
	if _, _, err := EvaluateBlindedWithRandomness(d.Shares[0], bl.Blinded(), suite.NewScalar()); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("EvaluateBlindedWithRandomness(ρ = 0) = %v", err)
	}
	if _, err := DeterministicBlind(testInput(), suite.NewScalar()); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("DeterministicBlind(r = 0) = %v", err)
	}
	if _, err := DeterministicBlind(testInput(), nil); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("DeterministicBlind(nil) = %v", err)
	}
}

// A zero top coefficient would make the polynomial of degree t − 2, so t − 1
// realms would hold k; a zero middle or constant coefficient an identity
// commitment. DealFromCoefficients refuses every one.
func TestZeroCoefficientsAreRefused(t *testing.T) {
	for _, shape := range [][2]int{{2, 3}, {3, 5}, {5, 8}} {
		th, n := shape[0], shape[1]
		if _, err := DealFromCoefficients(fixedCoefficients(t, "zero coefficient", th), n); err != nil {
			t.Fatalf("t=%d n=%d with nonzero coefficients: %v", th, n, err)
		}
		for j := range th {
			c := fixedCoefficients(t, "zero coefficient", th)
			c[j] = suite.NewScalar()
			if _, err := DealFromCoefficients(c, n); !errors.Is(err, ErrZeroScalar) {
				t.Errorf("t=%d, a_%d = 0: %v", th, j, err)
			}
			c[j] = nil
			if _, err := DealFromCoefficients(c, n); !errors.Is(err, ErrZeroScalar) {
				t.Errorf("t=%d, a_%d = nil: %v", th, j, err)
			}
		}
	}
}

// Shapes outside n/2 < t ≤ n, 2 ≤ n ≤ 8 are refused by Deal and
// DealFromCoefficients alike.
func TestBadShapesAreRefused(t *testing.T) {
	for _, s := range [][2]int{{1, 2}, {1, 1}, {2, 4}, {3, 2}, {4, 8}, {5, 9}, {9, 9}, {0, 0}, {2, 1}} {
		if _, err := Deal(s[0], s[1]); !errors.Is(err, ErrThreshold) {
			t.Errorf("Deal(%d, %d) = %v", s[0], s[1], err)
		}
		if s[0] > 0 {
			if _, err := DealFromCoefficients(fixedCoefficients(t, "shape", s[0]), s[1]); !errors.Is(err, ErrThreshold) {
				t.Errorf("DealFromCoefficients(t=%d, n=%d) = %v", s[0], s[1], err)
			}
		}
	}
	for _, s := range [][2]int{{2, 2}, {2, 3}, {3, 4}, {5, 8}, {8, 8}} {
		if _, err := Deal(s[0], s[1]); err != nil {
			t.Errorf("Deal(%d, %d) = %v", s[0], s[1], err)
		}
	}
}

// Repeated and out-of-range indices are refused before any inversion: with
// circl's Inv(0) = 0 a repeat would otherwise give a λ and an output.
func TestBadIndicesAreRefusedBeforeInversion(t *testing.T) {
	input := testInput()
	d := fixedDealing(t, "indices", 3, 5)
	blind, _ := NewBlind(input)
	evals := evaluateAll(t, d, blind.Blinded())
	for _, idx := range [][]int{{1, 1, 2}, {2, 3, 2}, {0, 1, 2}, {1, 2, 9}, {-1, 1, 2}, {1, 2, 1 << 30}, {1}, {}, {1, 2, 3, 4, 5, 6, 7, 8, 1}} {
		if _, err := Lagrange(idx); !errors.Is(err, ErrIndex) {
			t.Errorf("Lagrange(%v) = %v", idx, err)
		}
		ev := make([][]byte, len(idx))
		for m := range ev {
			ev[m] = evals[m%5]
		}
		if _, err := blind.Finalize(input, idx, ev); !errors.Is(err, ErrIndex) {
			t.Errorf("Finalize(%v) = %v", idx, err)
		}
	}
	if _, err := blind.Finalize(input, []int{1, 2, 3}, evals[:2]); !errors.Is(err, ErrIndex) {
		t.Errorf("Finalize with 3 indices and 2 evaluations = %v", err)
	}
	for _, idx := range []int{0, 9, -1} {
		if _, err := PublicShare(d.Commitments, idx); !errors.Is(err, ErrIndex) {
			t.Errorf("PublicShare(%d) = %v", idx, err)
		}
		if err := CheckShare(d.Commitments, idx, d.Shares[0]); !errors.Is(err, ErrIndex) {
			t.Errorf("CheckShare(%d) = %v", idx, err)
		}
	}
}

// The Lagrange coefficients at 0 reconstruct a polynomial's constant term
// from any t of its values (checked on scalars, independently of elements).
func TestLagrangeInterpolatesAtZero(t *testing.T) {
	coeffs := fixedCoefficients(t, "lagrange", 4)
	for _, s := range subsets(8, 4) {
		lambda, err := Lagrange(s)
		if err != nil {
			t.Fatal(err)
		}
		sum := suite.NewScalar()
		for m, i := range s {
			sum.Add(sum, suite.NewScalar().Mul(lambda[m], evalPoly(coeffs, scalarOf(i))))
		}
		if !sum.IsEqual(coeffs[0]) {
			t.Fatalf("subset %v does not interpolate f(0)", s)
		}
	}
}

// A realm refuses, at registration, a share that is not its own.
func TestCheckShareRefusesAShareOffTheCommitments(t *testing.T) {
	d := fixedDealing(t, "check share", 3, 5)
	other := fixedDealing(t, "another version", 3, 5)
	plusOne := mustScalar(t, d.Shares[0])
	plusOne.Add(plusOne, suite.NewScalar().SetUint64(1))
	for name, c := range map[string]struct {
		index int
		share []byte
	}{
		"realm 2's share as realm 1's":     {1, d.Shares[1]},
		"realm 1's share as realm 2's":     {2, d.Shares[0]},
		"share of another version":         {1, other.Shares[0]},
		"share plus one":                   {1, mustMarshalScalar(plusOne)},
		"realm 1's share as realm 6's":     {6, d.Shares[0]},
		"a share of the right dealing, 31": {1, d.Shares[0][:31]},
	} {
		if err := CheckShare(d.Commitments, c.index, c.share); err == nil {
			t.Errorf("%s: accepted", name)
		} else if len(c.share) == ScalarSize && !errors.Is(err, ErrShare) {
			t.Errorf("%s: %v, want ErrShare", name, err)
		}
	}
	// Commitments with C_{t−1} dropped (what circl's CommitSecret returns for
	// a zero top coefficient) do not match the shares either.
	if err := CheckShare(d.Commitments[:2], 1, d.Shares[0]); !errors.Is(err, ErrShare) {
		t.Errorf("truncated commitments: %v", err)
	}
}

// Wiped secrets cannot be used by mistake.
func TestWipedSecretsAreUnusable(t *testing.T) {
	input := testInput()
	d := fixedDealing(t, "wipe", 2, 3)
	blind, _ := NewBlind(input)
	evals := evaluateAll(t, d, blind.Blinded())
	shares := append([][]byte(nil), d.Shares...)
	d.Wipe()
	if _, err := d.Evaluate(input); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("Evaluate after Wipe = %v", err)
	}
	for i, s := range shares {
		if !bytes.Equal(s, make([]byte, ScalarSize)) {
			t.Errorf("share %d not zeroed", i+1)
		}
	}
	blind.Wipe()
	if _, err := blind.Finalize(input, []int{1, 2}, evals[:2]); !errors.Is(err, ErrZeroScalar) {
		t.Errorf("Finalize after Wipe = %v", err)
	}
	var zero group.Scalar = suite.NewScalar()
	if _, err := DeterministicBlind(input, zero); err == nil {
		t.Error("zero blind accepted")
	}
}
