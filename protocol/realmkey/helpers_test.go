package realmkey

import (
	"crypto/sha512"
	"fmt"
	"testing"

	"github.com/cloudflare/circl/group"
)

// fixedScalar is a nonzero scalar derived from a label, so tests are
// reproducible without an io.Reader (circl's ristretto255 ignores it).
func fixedScalar(t testing.TB, label string) group.Scalar {
	t.Helper()
	s := suite.HashToScalar([]byte(label), []byte("realmkey test scalar"))
	if s.IsZero() {
		t.Fatalf("label %q hashes to zero", label)
	}
	return s
}

func fixedCoefficients(t testing.TB, label string, threshold int) []group.Scalar {
	t.Helper()
	c := make([]group.Scalar, threshold)
	for j := range c {
		c[j] = fixedScalar(t, fmt.Sprintf("%s a_%d", label, j))
	}
	return c
}

func fixedDealing(t testing.TB, label string, threshold, n int) *Dealing {
	t.Helper()
	d, err := DealFromCoefficients(fixedCoefficients(t, label, threshold), n)
	if err != nil {
		t.Fatalf("DealFromCoefficients(%d of %d): %v", threshold, n, err)
	}
	return d
}

// subsets lists every k-element subset of 1..n, in increasing order.
func subsets(n, k int) [][]int {
	var out [][]int
	var walk func(start int, cur []int)
	walk = func(start int, cur []int) {
		if len(cur) == k {
			out = append(out, append([]int(nil), cur...))
			return
		}
		for i := start; i <= n; i++ {
			walk(i+1, append(cur, i))
		}
	}
	walk(1, nil)
	return out
}

func testInput() []byte {
	return Input([]byte("0123456789abcdef"), []byte("correct horse battery staple"))
}

// identityBytes is the all-zero encoding, which circl decodes as the identity.
var identityBytes = make([]byte, ElementSize)

func sha512Of(b []byte) []byte { h := sha512.Sum512(b); return h[:] }

// evaluateAll has every realm of d evaluate bl, checking each proof.
func evaluateAll(t testing.TB, d *Dealing, bl []byte) [][]byte {
	t.Helper()
	out := make([][]byte, d.N)
	for i := 1; i <= d.N; i++ {
		e, proof, err := EvaluateBlinded(d.Shares[i-1], bl)
		if err != nil {
			t.Fatalf("realm %d: EvaluateBlinded: %v", i, err)
		}
		y, err := PublicShare(d.Commitments, i)
		if err != nil {
			t.Fatalf("PublicShare(%d): %v", i, err)
		}
		if err := VerifyEvaluation(y, bl, e, proof); err != nil {
			t.Fatalf("realm %d: an honest evaluation does not verify: %v", i, err)
		}
		out[i-1] = e
	}
	return out
}
