package client

import (
	"archive/tar"
	"bytes"
	"io"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// padmeSpec is SPEC.md's construction written out with floating-point-free
// loops instead of bit tricks: an independent reading of the same text.
func padmeSpec(l int64) int64 {
	if l < 2 {
		return l
	}
	e := 0
	for int64(1)<<(e+1) <= l {
		e++
	}
	s := 1
	for 1<<s <= e {
		s++
	}
	step := int64(1) << (e - s)
	return (l + step - 1) / step * step
}

// Padmé's properties: never shorter, at most 12% longer, monotone, a fixed
// point on its own outputs, and its output keeps at most S+1 significant
// bits: every length from 2^E to 2^(E+1) maps to one of at most 2^S+1
// values, so the padded size tells O(log log L) bits of L.
func TestPadmeProperties(t *testing.T) {
	check := func(l int64) {
		t.Helper()
		p := PadmeLength(l)
		if p != padmeSpec(l) {
			t.Fatalf("PadmeLength(%d) = %d, SPEC.md's construction gives %d", l, p, padmeSpec(l))
		}
		if p < l {
			t.Fatalf("PadmeLength(%d) = %d is shorter", l, p)
		}
		if l > 0 && float64(p-l) > 0.12*float64(l) {
			t.Fatalf("PadmeLength(%d) = %d: overhead %.2f%% > 12%%", l, p, 100*float64(p-l)/float64(l))
		}
		if PadmeLength(p) != p {
			t.Fatalf("PadmeLength(%d) = %d is not a fixed point", p, PadmeLength(p))
		}
		if l >= 2 {
			e := bits.Len64(uint64(l)) - 1
			s := bits.Len64(uint64(e))
			if tz := bits.TrailingZeros64(uint64(p)); tz < e-s {
				t.Fatalf("PadmeLength(%d) = %d has %d trailing zero bits, want at least E-S = %d", l, p, tz, e-s)
			}
		}
	}
	prev := int64(0)
	for l := int64(0); l <= 1<<20; l++ {
		check(l)
		p := PadmeLength(l)
		if p < prev {
			t.Fatalf("not monotone: PadmeLength(%d) = %d < PadmeLength(%d) = %d", l, p, l-1, prev)
		}
		prev = p
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200_000 {
		l := rng.Int64N(1 << 50)
		check(l)
		check(l + 1)
		if PadmeLength(l+1) < PadmeLength(l) {
			t.Fatalf("not monotone at %d", l)
		}
	}
	// The values a range of lengths can take: for E = 20 (1 MiB to 2 MiB),
	// S = 5, so at most 2^5 + 1 sizes for a million lengths.
	seen := map[int64]bool{}
	for l := int64(1 << 20); l < 1<<21; l++ {
		seen[PadmeLength(l)] = true
	}
	if len(seen) > 33 {
		t.Errorf("lengths 2^20..2^21 pad to %d values, want at most 33", len(seen))
	}
	// The largest overhead is at small lengths: 129 → 144.
	if PadmeLength(129) != 144 || PadmeLength(9) != 10 || PadmeLength(4096) != 4096 || PadmeLength(4097) != 4352 {
		t.Errorf("PadmeLength(129, 9, 4096, 4097) = %d, %d, %d, %d", PadmeLength(129), PadmeLength(9), PadmeLength(4096), PadmeLength(4097))
	}
}

// A backup's payload is its tar archive, then zeros up to the archive's
// Padmé length; ReadBackup reports both lengths.
func TestBackupIsPadded(t *testing.T) {
	_, id, rec := testKey(t)
	for _, n := range []int{0, 1, 700, 5000, 70_000, 300_001} {
		src := filepath.Join(t.TempDir(), "chat")
		os.Mkdir(src, 0o755)
		writeFile(t, filepath.Join(src, "messages"), bytes.Repeat([]byte("m"), n), 0o600)
		file := filepath.Join(t.TempDir(), "b.age")
		st := backupTo(t, file, rec, []string{src}, nil)

		f, _ := os.Open(file)
		var plain bytes.Buffer
		if err := decryptTo(&plain, f, id); err != nil {
			t.Fatal(err)
		}
		f.Close()
		// The archive ends where tar's reader stops, after its end marker.
		cr := &countingReader{r: bytes.NewReader(plain.Bytes())}
		tr := tar.NewReader(cr)
		for {
			if _, err := tr.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		archive := cr.n
		if st.Archive != archive || st.Payload != int64(plain.Len()) {
			t.Errorf("%d bytes: stats say archive %d payload %d; the file has %d and %d", n, st.Archive, st.Payload, archive, plain.Len())
		}
		if int64(plain.Len()) != PadmeLength(archive) {
			t.Errorf("%d bytes: payload %d, want PadmeLength(%d) = %d", n, plain.Len(), archive, PadmeLength(archive))
		}
		if tail := plain.Bytes()[archive:]; len(bytes.Trim(tail, "\x00")) != 0 {
			t.Errorf("%d bytes: padding is not zeros", n)
		}
		rs, err := restoreFrom(file, id, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rs.Archive != archive || rs.Payload != int64(plain.Len()) {
			t.Errorf("%d bytes: restore read archive %d payload %d, want %d %d", n, rs.Archive, rs.Payload, archive, plain.Len())
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
