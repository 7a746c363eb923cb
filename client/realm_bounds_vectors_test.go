package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
	"github.com/cofferhsm/coffer/protocol"
)

// The realm vectors of protocol/testdata/realms, written by gen_vectors.py
// there; bounds/ is the guess bounds of REALMS.md 12 (and C2's tolerance,
// section 10), in integers, independently of this package.
const realmVectorDir = "../protocol/testdata/realms"

// boundsList reads a header listing one entry per limit (or per holder
// count): a decimal number or a word.
func boundsList(t *testing.T, c *vectorfile.Case, name string) []string {
	t.Helper()
	v, ok := c.Header[name]
	if !ok {
		t.Fatalf("%s: no %q header", c.Path, name)
	}
	return strings.Split(v, ",")
}

// figure is how the vectors write a number.
func figure(n uint) string { return strconv.FormatUint(uint64(n), 10) }

// TestRealmBoundsVectors checks DeriveRealmBounds and TriesAcross against
// every case of bounds/: for every t-of-n set and every limit 1..100, L (or
// the refusal), the bound against the hosts and t − 1 realms, the host-only
// bound and the user's tries with every realm at L; with c insecure realms,
// the host-only figure, or no bound from c = t; and the tries-left cases.
// The vectors' bounds against c compromised realms for 0 < c < t − 1 have no
// figure of their own in the client: they are the insecure-c figures.
func TestRealmBoundsVectors(t *testing.T) {
	var tables, tries int
	for _, c := range vectorfile.Load(t, realmVectorDir) {
		if c.Group() != "bounds" {
			continue
		}
		c := c
		t.Run(c.Path, func(t *testing.T) {
			if strings.HasPrefix(c.Path, "bounds/tries-left-") {
				tries++
				var left []uint
				for _, s := range boundsList(t, &c, "tries") {
					r, err := strconv.ParseUint(s, 10, 32)
					if err != nil {
						t.Fatal(err)
					}
					left = append(left, uint(r))
				}
				if got := TriesAcross(int(c.Uint(t, "threshold")), left); figure(got) != c.Header["tries-left"] {
					t.Errorf("TriesAcross(%d, %v) = %d, the vector has %s", c.Uint(t, "threshold"), left, got, c.Header["tries-left"])
				}
				return
			}
			tables++
			checkBoundsTable(t, &c)
		})
	}
	if tables != 19 || tries != 20 {
		t.Errorf("%d bound tables and %d tries-left cases; REALMS.md 16 has 19 (every t of n ≤ 8) and 20", tables, tries)
	}
}

func checkBoundsTable(t *testing.T, c *vectorfile.Case) {
	th, n := int(c.Uint(t, "threshold")), int(c.Uint(t, "realms"))
	limits, per := boundsList(t, c, "limits"), boundsList(t, c, "per-realm")
	host, limitBound := boundsList(t, c, "bound-c0"), boundsList(t, c, fmt.Sprintf("bound-c%d", th-1))
	realms := func(insecure int) []RealmLimitInput {
		rs := make([]RealmLimitInput, n)
		for i := range rs {
			rs[i] = RealmLimitInput{Name: fmt.Sprintf("realm-%d", i+1), MaxLimit: protocol.MaxLimitCeiling, Insecure: i < insecure}
		}
		return rs
	}
	for i, ls := range limits {
		limit, err := strconv.ParseUint(ls, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		b, err := DeriveRealmBounds(uint(limit), th, realms(0), false)
		if per[i] == "refused" {
			if err == nil {
				t.Errorf("limit %d: L = %d, the vector refuses it", limit, b.PerRealm)
			}
			continue
		}
		if err != nil {
			t.Errorf("limit %d: %v; the vector has L = %s", limit, err, per[i])
			continue
		}
		if figure(b.PerRealm) != per[i] || figure(b.AgainstHosts) != host[i] ||
			figure(b.AgainstRealms) != limitBound[i] || figure(b.UserTries) != host[i] || b.NoBound {
			t.Errorf("limit %d: L %d, hosts %d, hosts and t−1 realms %d, user %d; the vector has %s, %s, %s, %s",
				limit, b.PerRealm, b.AgainstHosts, b.AgainstRealms, b.UserTries, per[i], host[i], limitBound[i], host[i])
		}
		for ci := 0; ci <= n; ci++ {
			want := boundsList(t, c, fmt.Sprintf("insecure-%d", ci))[i]
			bi, err := DeriveRealmBounds(uint(limit), th, realms(ci), true)
			if err != nil {
				t.Errorf("limit %d, %d insecure, --insecure: %v", limit, ci, err)
				continue
			}
			got := figure(bi.AgainstHosts)
			if bi.NoBound {
				got = "no-bound"
			}
			if got != want {
				t.Errorf("limit %d, %d insecure: %s, the vector has %s", limit, ci, got, want)
			}
			if ci > 0 {
				// Without --insecure every insecure realm is refused, and a
				// set with as many as the threshold says there is no bound.
				_, err := DeriveRealmBounds(uint(limit), th, realms(ci), false)
				if err == nil || errors.Is(err, ErrNoGuessBound) != (ci >= th) {
					t.Errorf("limit %d, %d insecure, without --insecure: %v", limit, ci, err)
				}
			}
		}
	}
}
