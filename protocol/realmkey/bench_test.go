package realmkey

import "testing"

// BenchmarkRealmEvaluate is a realm's work per evaluation: decode, share·Bl
// and the DLEQ proof.
func BenchmarkRealmEvaluate(b *testing.B) {
	d := fixedDealing(b, "bench", 2, 3)
	blind, err := NewBlind(testInput())
	if err != nil {
		b.Fatal(err)
	}
	bl := blind.Blinded()
	for b.Loop() {
		if _, _, err := EvaluateBlinded(d.Shares[0], bl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientVerifyEvaluation is the client's check of one realm's
// answer, public share included.
func BenchmarkClientVerifyEvaluation(b *testing.B) {
	d := fixedDealing(b, "bench", 2, 3)
	blind, err := NewBlind(testInput())
	if err != nil {
		b.Fatal(err)
	}
	bl := blind.Blinded()
	e, proof, err := EvaluateBlinded(d.Shares[0], bl)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		y, err := PublicShare(d.Commitments, 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := VerifyEvaluation(y, bl, e, proof); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientFinalize5of8 is the combination of 5 evaluations.
func BenchmarkClientFinalize5of8(b *testing.B) {
	input := testInput()
	d := fixedDealing(b, "bench", 5, 8)
	blind, err := NewBlind(input)
	if err != nil {
		b.Fatal(err)
	}
	evals := evaluateAll(b, d, blind.Blinded())
	for b.Loop() {
		if _, err := blind.Finalize(input, []int{1, 2, 3, 4, 5}, evals[:5]); err != nil {
			b.Fatal(err)
		}
	}
}
