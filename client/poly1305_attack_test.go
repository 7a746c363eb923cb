package client

import (
	"encoding/binary"
	"math/big"
	"slices"

	"golang.org/x/crypto/poly1305"
)

// The host's tool against a reply sealed twice under one ChaCha20-Poly1305
// key and nonce: from two (message, tag) pairs under the same one-time
// Poly1305 key (r, s) it solves for r, and with it forges a tag for any
// message. Attacker code, for tests only.
//
// Each tag is (h(r) + s) mod 2^128, where h(r) = Σ block_i · r^(L−i+1) mod
// 2^130−5 over the message's 16-byte blocks (each + 2^128). So h1(r) − h2(r)
// equals tag1 − tag2 up to a multiple of 2^128 between −4 and 4: for each
// multiple, r is a root of a known polynomial over GF(2^130−5). Candidates
// are the clamped roots; a third tagged message under the same key confirms
// the one that is right.

var (
	poly1305Prime = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 130), big.NewInt(5))
	two128        = new(big.Int).Lsh(big.NewInt(1), 128)
	poly1305Clamp = func() *big.Int {
		c, _ := new(big.Int).SetString("0ffffffc0ffffffc0ffffffc0fffffff", 16)
		return c
	}()
)

// aeadMACInput is what ChaCha20-Poly1305 authenticates (RFC 8439, 2.8):
// aad, padded to 16 bytes, ciphertext, padded, then both lengths.
func aeadMACInput(aad, ciphertext []byte) []byte {
	pad := func(b []byte) []byte { return append(b, make([]byte, (16-len(b)%16)%16)...) }
	m := pad(append([]byte(nil), aad...))
	m = pad(append(m, ciphertext...))
	m = binary.LittleEndian.AppendUint64(m, uint64(len(aad)))
	return binary.LittleEndian.AppendUint64(m, uint64(len(ciphertext)))
}

// recoverPoly1305Keys returns every Poly1305 key under which all the given
// messages (each a multiple of 16 bytes) carry their tags. With fewer than
// three messages more than one key may fit.
func recoverPoly1305Keys(msgs [][]byte, tags [][]byte) [][32]byte {
	if len(msgs) < 2 {
		return nil
	}
	h1, h2 := macPolynomial(msgs[0]), macPolynomial(msgs[1])
	diff := h1.sub(h2)
	if len(diff) == 0 {
		return nil // the same message twice says nothing about r
	}
	t1, t2 := leInt(tags[0]), leInt(tags[1])
	d := new(big.Int).Sub(t1, t2)
	d.Mod(d, two128)
	var keys [][32]byte
	for k := int64(-4); k <= 4; k++ {
		c := new(big.Int).Mul(big.NewInt(k), two128)
		c.Add(c, d)
		for _, r := range diff.sub(poly{fieldMod(c)}).roots() {
			if new(big.Int).And(r, poly1305Clamp).Cmp(r) != 0 {
				continue // r is clamped; roots that are not are spurious
			}
			s := new(big.Int).Sub(t1, h1.eval(r))
			s.Mod(s, two128)
			var key [32]byte
			putLE(key[:16], r)
			putLE(key[16:], s)
			ok := true
			for i := range msgs {
				ok = ok && poly1305.Verify((*[16]byte)(tags[i]), msgs[i], &key)
			}
			if ok && !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
	}
	return keys
}

func leInt(b []byte) *big.Int {
	be := slices.Clone(b)
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

func putLE(dst []byte, x *big.Int) {
	x.FillBytes(dst)
	slices.Reverse(dst)
}

// macPolynomial is h as a polynomial in r for msg.
func macPolynomial(msg []byte) poly {
	blocks := len(msg) / 16
	h := make(poly, blocks+1)
	h[0] = new(big.Int)
	for i := range blocks {
		c := leInt(msg[16*i : 16*i+16])
		h[blocks-i] = c.Add(c, two128)
	}
	return h.trim()
}

// poly is a polynomial over GF(2^130−5), lowest degree first, trimmed.
type poly []*big.Int

func fieldMod(x *big.Int) *big.Int { return x.Mod(x, poly1305Prime) }

func (f poly) trim() poly {
	for len(f) > 0 && f[len(f)-1].Sign() == 0 {
		f = f[:len(f)-1]
	}
	return f
}

func (f poly) deg() int { return len(f) - 1 }

func (f poly) sub(g poly) poly {
	out := make(poly, max(len(f), len(g)))
	for i := range out {
		out[i] = new(big.Int)
		if i < len(f) {
			out[i].Add(out[i], f[i])
		}
		if i < len(g) {
			out[i].Sub(out[i], g[i])
		}
		fieldMod(out[i])
	}
	return out.trim()
}

func (f poly) mul(g poly) poly {
	if len(f) == 0 || len(g) == 0 {
		return nil
	}
	out := make(poly, len(f)+len(g)-1)
	for i := range out {
		out[i] = new(big.Int)
	}
	for i, a := range f {
		for j, b := range g {
			out[i+j].Add(out[i+j], new(big.Int).Mul(a, b))
		}
	}
	for _, c := range out {
		fieldMod(c)
	}
	return out.trim()
}

// divMod divides f by a non-zero g.
func (f poly) divMod(g poly) (q, r poly) {
	r = slices.Clone(f)
	for i := range r {
		r[i] = new(big.Int).Set(r[i])
	}
	inv := new(big.Int).ModInverse(g[len(g)-1], poly1305Prime)
	q = make(poly, max(len(f)-len(g)+1, 0))
	for i := range q {
		q[i] = new(big.Int)
	}
	for r = r.trim(); len(r) >= len(g); r = r.trim() {
		shift := len(r) - len(g)
		c := fieldMod(new(big.Int).Mul(r[len(r)-1], inv))
		q[shift] = c
		for j, b := range g {
			t := new(big.Int).Mul(c, b)
			r[shift+j] = fieldMod(t.Sub(r[shift+j], t))
		}
	}
	return q.trim(), r
}

func (f poly) monic() poly {
	if len(f) == 0 {
		return f
	}
	q, _ := f.divMod(poly{f[len(f)-1]})
	return q
}

func gcd(f, g poly) poly {
	for len(g) > 0 {
		_, r := f.divMod(g)
		f, g = g, r
	}
	return f.monic()
}

func (f poly) powMod(e *big.Int, m poly) poly {
	_, base := f.divMod(m)
	out := poly{big.NewInt(1)}
	for i := e.BitLen() - 1; i >= 0; i-- {
		_, out = out.mul(out).divMod(m)
		if e.Bit(i) == 1 {
			_, out = out.mul(base).divMod(m)
		}
	}
	return out
}

func (f poly) eval(x *big.Int) *big.Int {
	acc := new(big.Int)
	for i := len(f) - 1; i >= 0; i-- {
		acc.Mul(acc, x)
		acc.Add(acc, f[i])
		fieldMod(acc)
	}
	return acc
}

// roots returns the distinct roots of f in GF(2^130−5): gcd(f, x^p − x) is
// the product of (x − root), split by Cantor–Zassenhaus.
func (f poly) roots() []*big.Int {
	if f.deg() < 1 {
		return nil
	}
	x := poly{new(big.Int), big.NewInt(1)}
	return gcd(f, x.powMod(poly1305Prime, f).sub(x)).split()
}

func (g poly) split() []*big.Int {
	switch {
	case g.deg() < 1:
		return nil
	case g.deg() == 1:
		return []*big.Int{fieldMod(new(big.Int).Neg(g[0]))}
	}
	half := new(big.Int).Rsh(poly1305Prime, 1) // (p−1)/2, p odd
	for delta := int64(1); ; delta++ {
		h := poly{big.NewInt(delta), big.NewInt(1)}.powMod(half, g).sub(poly{big.NewInt(1)})
		d := gcd(g, h)
		if d.deg() > 0 && d.deg() < g.deg() {
			q, _ := g.divMod(d)
			return append(d.split(), q.split()...)
		}
	}
}
