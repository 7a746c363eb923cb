package realmkey

import (
	"bytes"
	"errors"
	"testing"
)

// The fuzz targets feed every parser of outside bytes (commitments, shares,
// blinded and evaluated elements, proofs, indices) with arbitrary input.
// Beyond "no panic", each checks what an acceptance promises, recomputed
// another way.

// chunks splits b into 32-byte pieces (the last may be short), at most max.
func chunks(b []byte, max int) [][]byte {
	var out [][]byte
	for len(b) > 0 && len(out) < max {
		n := min(len(b), ElementSize)
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// fuzzDealing is the fixed 3-of-5 dealing whose pieces seed the corpora.
func fuzzDealing(t testing.TB) *Dealing { return fixedDealing(t, "fuzz", 3, 5) }

// naivePublicShare is Σ_j i^j·C_j with the powers built by repeated
// addition of scalars, independent of publicShare's loop.
func naivePublicShare(commitments [][]byte, index int) []byte {
	sum := suite.Identity()
	for j, enc := range commitments {
		c := suite.NewElement()
		if c.UnmarshalBinary(enc) != nil {
			return nil
		}
		for range j {
			c.Mul(c, scalarOf(index))
		}
		sum.Add(sum, c)
	}
	return mustMarshal(sum)
}

func FuzzPublicShare(f *testing.F) {
	d := fuzzDealing(f)
	all := bytes.Join(d.Commitments, nil)
	f.Add(all, 1)
	f.Add(all, 5)
	f.Add(all, 8)
	f.Add(all, 0)
	f.Add(all, 9)
	f.Add(all[:64], 2)
	f.Add(append(append([]byte{}, all[:32]...), identityBytes...), 1)
	p := suite.NewElement().MulGen(fixedScalar(f, "P"))
	f.Add(append(mustMarshal(p), mustMarshal(suite.NewElement().Neg(p))...), 1)
	f.Add(bytes.Repeat([]byte{0xff}, 96), 3)
	f.Fuzz(func(t *testing.T, data []byte, index int) {
		cs := chunks(data, MaxRealms+1)
		y, err := PublicShare(cs, index)
		if err != nil {
			if y != nil {
				t.Fatal("output with an error")
			}
			return
		}
		if index < 1 || index > MaxRealms || len(cs) < 2 || len(cs) > MaxRealms {
			t.Fatalf("accepted index %d with %d commitments", index, len(cs))
		}
		for j, c := range cs {
			if _, err := decodeElement(c); err != nil {
				t.Fatalf("accepted C_%d: %v", j, err)
			}
		}
		if _, err := decodeElement(y); err != nil {
			t.Fatalf("returned a bad Y: %v", err)
		}
		if want := naivePublicShare(cs, index); !bytes.Equal(y, want) {
			t.Fatalf("Y = %x, naive sum %x", y, want)
		}
	})
}

func FuzzCheckShare(f *testing.F) {
	d := fuzzDealing(f)
	all := bytes.Join(d.Commitments, nil)
	for i := 1; i <= d.N; i++ {
		f.Add(all, i, d.Shares[i-1])
	}
	f.Add(all, 1, d.Shares[1])
	f.Add(all, 1, make([]byte, 32))
	f.Add(all, 9, d.Shares[0])
	f.Add(all[:64], 1, d.Shares[0])
	f.Add(all, 1, bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, data []byte, index int, share []byte) {
		cs := chunks(data, MaxRealms+1)
		if err := CheckShare(cs, index, share); err != nil {
			return
		}
		k, err := decodeScalar(share)
		if err != nil {
			t.Fatalf("accepted share: %v", err)
		}
		y, err := PublicShare(cs, index)
		if err != nil {
			t.Fatalf("accepted, but PublicShare: %v", err)
		}
		if !bytes.Equal(mustMarshal(suite.NewElement().MulGen(k)), y) {
			t.Fatal("accepted a share whose share·G is not Y")
		}
	})
}

func FuzzEvaluateBlinded(f *testing.F) {
	d := fuzzDealing(f)
	blind, err := DeterministicBlind(testInput(), fixedScalar(f, "fuzz blind"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(d.Shares[0], blind.Blinded())
	f.Add(d.Shares[4], blind.Blinded())
	f.Add(make([]byte, 32), blind.Blinded())
	f.Add(d.Shares[0], identityBytes)
	f.Add(d.Shares[0], bytes.Repeat([]byte{0xff}, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), blind.Blinded())
	f.Add(d.Shares[0][:31], blind.Blinded())
	f.Fuzz(func(t *testing.T, share, blinded []byte) {
		e, proof, err := EvaluateBlinded(share, blinded)
		if err != nil {
			if e != nil || proof != nil {
				t.Fatal("output with an error")
			}
			return
		}
		k, err := decodeScalar(share)
		if err != nil {
			t.Fatalf("accepted share: %v", err)
		}
		bl, err := decodeElement(blinded)
		if err != nil {
			t.Fatalf("accepted Bl: %v", err)
		}
		if !bytes.Equal(e, mustMarshal(bl.Mul(bl, k))) {
			t.Fatal("E is not share·Bl")
		}
		y := mustMarshal(suite.NewElement().MulGen(k))
		if err := VerifyEvaluation(y, blinded, e, proof); err != nil {
			t.Fatalf("own proof does not verify: %v", err)
		}
	})
}

func FuzzVerifyEvaluation(f *testing.F) {
	d := fuzzDealing(f)
	blind, err := DeterministicBlind(testInput(), fixedScalar(f, "fuzz blind"))
	if err != nil {
		f.Fatal(err)
	}
	bl := blind.Blinded()
	y1, _ := PublicShare(d.Commitments, 1)
	y2, _ := PublicShare(d.Commitments, 2)
	e1, p1, _ := EvaluateBlinded(d.Shares[0], bl)
	e2, p2, _ := EvaluateBlinded(d.Shares[1], bl)
	f.Add(y1, bl, e1, p1)
	f.Add(y2, bl, e2, p2)
	f.Add(y1, bl, e2, p2)
	f.Add(y1, bl, identityBytes, p1)
	f.Add(identityBytes, bl, e1, p1)
	f.Add(y1, identityBytes, e1, p1)
	f.Add(y1, bl, e1, p1[:63])
	f.Add(y1, bl, e1, bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, y, blinded, evaluated, proof []byte) {
		err := VerifyEvaluation(y, blinded, evaluated, proof)
		if err != nil {
			for _, e := range []error{ErrIdentity, ErrEncoding, ErrProof} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		for _, b := range [][]byte{y, blinded, evaluated} {
			if _, err := decodeElement(b); err != nil {
				t.Fatalf("accepted an element: %v", err)
			}
		}
		// A proof binds E: the same proof for 2·E must fail.
		e, _ := decodeElement(evaluated)
		if VerifyEvaluation(y, blinded, mustMarshal(e.Add(e, e)), proof) == nil {
			t.Fatal("the proof also verifies for 2·E")
		}
	})
}

func FuzzFinalize(f *testing.F) {
	input := testInput()
	d := fuzzDealing(f)
	blind, err := DeterministicBlind(input, fixedScalar(f, "fuzz blind"))
	if err != nil {
		f.Fatal(err)
	}
	evals := evaluateAll(f, d, blind.Blinded())
	want := referenceOutput(f, d.root, input)
	all := bytes.Join(evals, nil)
	f.Add([]byte{1, 2, 3}, all[:96])
	f.Add([]byte{5, 3, 1}, bytes.Join([][]byte{evals[4], evals[2], evals[0]}, nil))
	f.Add([]byte{1, 1, 2}, all[:96])
	f.Add([]byte{0, 1, 2}, all[:96])
	f.Add([]byte{1, 2, 9}, all[:96])
	f.Add([]byte{1, 2}, all[:64])
	f.Add([]byte{1, 2, 3}, append(all[:64:64], identityBytes...))
	f.Add([]byte{1, 2, 3, 4, 5}, all)
	f.Fuzz(func(t *testing.T, idx []byte, data []byte) {
		indices := make([]int, 0, len(idx))
		for _, b := range idx {
			indices = append(indices, int(int8(b)))
		}
		ev := chunks(data, 2*MaxRealms)
		y, err := blind.Finalize(input, indices, ev)
		if err != nil {
			if y != nil {
				t.Fatal("output with an error")
			}
			return
		}
		if len(y) != OutputSize {
			t.Fatalf("output of %d bytes", len(y))
		}
		seen := map[int]bool{}
		for _, i := range indices {
			if i < 1 || i > MaxRealms || seen[i] {
				t.Fatalf("accepted indices %v", indices)
			}
			seen[i] = true
		}
		honest := len(indices) >= d.Threshold
		for m, i := range indices {
			if i > d.N || !bytes.Equal(ev[m], evals[i-1]) {
				honest = false
			}
		}
		if honest && !bytes.Equal(y, want) {
			t.Fatalf("honest evaluations %v give %x, want %x", indices, y, want)
		}
	})
}
