package realmkey

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/zk/dleq"
)

// referenceOutput is circl's own RFC 9497 verifiable server's FullEvaluate
// under the root key k of d: the independent answer every t realms must give.
func referenceOutput(t testing.TB, root group.Scalar, input []byte) []byte {
	t.Helper()
	enc, err := root.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var key oprf.PrivateKey
	if err := key.UnmarshalBinary(oprf.SuiteRistretto255, enc); err != nil {
		t.Fatalf("oprf key from the root scalar: %v", err)
	}
	y, err := oprf.NewVerifiableServer(oprf.SuiteRistretto255, &key).FullEvaluate(input)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// Every t-subset of the realms of 2-of-3, 3-of-5 and 5-of-8 combines to
// RFC 9497 Evaluate under the root key, as circl's oprf computes it; so does
// Dealing.Evaluate. Random dealings and fixed ones both.
func TestEveryThresholdSubsetGivesTheRootKeysOutput(t *testing.T) {
	input := testInput()
	for _, shape := range [][2]int{{2, 3}, {3, 5}, {5, 8}} {
		th, n := shape[0], shape[1]
		for _, random := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dof%d/random=%v", th, n, random), func(t *testing.T) {
				var d *Dealing
				if random {
					var err error
					if d, err = Deal(th, n); err != nil {
						t.Fatal(err)
					}
				} else {
					d = fixedDealing(t, "reference", th, n)
				}
				if len(d.Commitments) != th || len(d.Shares) != n || d.Threshold != th || d.N != n {
					t.Fatalf("dealing shape: %d commitments, %d shares, t=%d n=%d", len(d.Commitments), len(d.Shares), d.Threshold, d.N)
				}
				want := referenceOutput(t, d.root, input)
				if got, err := d.Evaluate(input); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("Dealing.Evaluate = %x, %v; circl FullEvaluate = %x", got, err, want)
				}
				blind, err := NewBlind(input)
				if err != nil {
					t.Fatal(err)
				}
				evals := evaluateAll(t, d, blind.Blinded())
				for _, s := range subsets(n, th) {
					sub := make([][]byte, len(s))
					for m, i := range s {
						sub[m] = evals[i-1]
					}
					y, err := blind.Finalize(input, s, sub)
					if err != nil {
						t.Fatalf("subset %v: %v", s, err)
					}
					if !bytes.Equal(y, want) {
						t.Fatalf("subset %v gives %x, want %x", s, y, want)
					}
				}
				// Order does not matter: the reversed first subset too.
				s := subsets(n, th)[0]
				rs := make([]int, len(s))
				sub := make([][]byte, len(s))
				for m := range s {
					rs[m] = s[len(s)-1-m]
					sub[m] = evals[rs[m]-1]
				}
				if y, err := blind.Finalize(input, rs, sub); err != nil || !bytes.Equal(y, want) {
					t.Fatalf("reversed subset %v: %x, %v", rs, y, err)
				}
			})
		}
	}
}

// t − 1 evaluations (with the Lagrange coefficients of t − 1 indices) do not
// give y: the threshold is real, not an artefact of the combination code.
func TestFewerThanThresholdEvaluationsDoNotGiveTheOutput(t *testing.T) {
	input := testInput()
	d := fixedDealing(t, "below threshold", 3, 5)
	want := referenceOutput(t, d.root, input)
	blind, err := NewBlind(input)
	if err != nil {
		t.Fatal(err)
	}
	evals := evaluateAll(t, d, blind.Blinded())
	for _, s := range subsets(5, 2) {
		y, err := blind.Finalize(input, s, [][]byte{evals[s[0]-1], evals[s[1]-1]})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(y, want) {
			t.Fatalf("two of a 3-of-5 set, %v, gave the root key's output", s)
		}
	}
}

// Our blind is circl's DeterministicBlind, our realm's proof verifies with
// circl's VerifiableClient under Y_i, and circl's VerifiableServer's proof
// (under a share as its key) verifies with VerifyEvaluation: the proofs are
// RFC 9497's, checked by an implementation that is not ours.
func TestBlindAndProofsInteroperateWithCirclOPRF(t *testing.T) {
	input := testInput()
	d := fixedDealing(t, "interop", 2, 3)
	r := fixedScalar(t, "interop blind")
	blind, err := DeterministicBlind(input, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= d.N; i++ {
		var key oprf.PrivateKey
		if err := key.UnmarshalBinary(oprf.SuiteRistretto255, d.Shares[i-1]); err != nil {
			t.Fatal(err)
		}
		client := oprf.NewVerifiableClient(oprf.SuiteRistretto255, key.Public())
		fin, req, err := client.DeterministicBlind([][]byte{input}, []oprf.Blind{r.Copy()})
		if err != nil {
			t.Fatal(err)
		}
		if got := mustMarshal(req.Elements[0]); !bytes.Equal(got, blind.Blinded()) {
			t.Fatalf("Bl = %x, circl blinds to %x", blind.Blinded(), got)
		}

		// Ours to circl's client.
		e, proofBytes, err := EvaluateBlinded(d.Shares[i-1], blind.Blinded())
		if err != nil {
			t.Fatal(err)
		}
		ee := suite.NewElement()
		if err := ee.UnmarshalBinary(e); err != nil {
			t.Fatal(err)
		}
		var proof dleq.Proof
		if err := proof.UnmarshalBinary(suite, proofBytes); err != nil {
			t.Fatal(err)
		}
		outs, err := client.Finalize(fin, &oprf.Evaluation{Elements: []oprf.Evaluated{ee}, Proof: &proof})
		if err != nil {
			t.Fatalf("realm %d: circl's client refuses our proof: %v", i, err)
		}
		// A single share's output is RFC 9497 Evaluate under that share.
		if want := referenceOutput(t, mustScalar(t, d.Shares[i-1]), input); !bytes.Equal(outs[0], want) {
			t.Fatalf("realm %d: circl finalizes to %x, want %x", i, outs[0], want)
		}

		// circl's server to ours.
		ev, err := oprf.NewVerifiableServer(oprf.SuiteRistretto255, &key).Evaluate(req)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := ev.Proof.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		y, err := PublicShare(d.Commitments, i)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyEvaluation(y, blind.Blinded(), mustMarshal(ev.Elements[0]), cp); err != nil {
			t.Fatalf("realm %d: we refuse circl's proof: %v", i, err)
		}
		if !bytes.Equal(mustMarshal(ev.Elements[0]), e) {
			t.Fatalf("realm %d: E differs from circl's", i)
		}
	}
}

func mustScalar(t *testing.T, b []byte) group.Scalar {
	t.Helper()
	s, err := decodeScalar(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The commitments are a_j·G and C_0 is the VOPRF public key k·G; the public
// shares are share·G and pass CheckShare.
func TestCommitmentsAndPublicShares(t *testing.T) {
	coeffs := fixedCoefficients(t, "commitments", 3)
	d, err := DealFromCoefficients(coeffs, 5)
	if err != nil {
		t.Fatal(err)
	}
	for j, a := range coeffs {
		if !bytes.Equal(d.Commitments[j], mustMarshal(suite.NewElement().MulGen(a))) {
			t.Fatalf("C_%d is not a_%d·G", j, j)
		}
	}
	for i := 1; i <= 5; i++ {
		// f(i) computed naively, not by Horner.
		want := suite.NewScalar()
		for j, a := range coeffs {
			xj := suite.NewScalar().SetUint64(1)
			for range j {
				xj.Mul(xj, scalarOf(i))
			}
			want.Add(want, suite.NewScalar().Mul(a, xj))
		}
		if !bytes.Equal(d.Shares[i-1], mustMarshalScalar(want)) {
			t.Fatalf("share %d is not f(%d)", i, i)
		}
		y, err := PublicShare(d.Commitments, i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(y, mustMarshal(suite.NewElement().MulGen(want))) {
			t.Fatalf("Y_%d is not f(%d)·G", i, i)
		}
		if err := CheckShare(d.Commitments, i, d.Shares[i-1]); err != nil {
			t.Fatalf("CheckShare(%d) refuses an honest share: %v", i, err)
		}
	}
}

// Deal draws a fresh key each time: two dealings differ.
func TestDealIsRandom(t *testing.T) {
	a, err := Deal(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Deal(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Commitments[0], b.Commitments[0]) || bytes.Equal(a.Shares[0], b.Shares[0]) {
		t.Fatal("two dealings share a root key or share")
	}
}
