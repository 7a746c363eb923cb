package client

import (
	"errors"
	"strings"
	"testing"
)

func secureRealms(n int, maxLimit uint) []RealmLimitInput {
	in := make([]RealmLimitInput, n)
	for i := range in {
		in[i] = RealmLimitInput{Name: string(rune('A' + i)), MaxLimit: maxLimit}
	}
	return in
}

// REALMS.md 12.3's table (limit 10) and its refusals: L = ⌊limit/(n−t+1)⌋,
// refused when 0 or above a realm's maximum.
func TestLimitDerivesPerRealmLimitAndRefusesZero(t *testing.T) {
	for _, c := range []struct {
		t, n                              int
		limit, perRealm, hosts, strongest uint
	}{
		{2, 3, 10, 5, 7, 10},
		{3, 5, 10, 3, 5, 9},
		{2, 2, 10, 10, 10, 10},
		{5, 8, 10, 2, 3, 8},
		{2, 3, 0, 5, 7, 10}, // 0 is the default, 10
		{2, 3, 2, 1, 1, 2},  // the smallest limit for 2 of 3
	} {
		b, err := DeriveRealmBounds(c.limit, c.t, secureRealms(c.n, 100), false)
		if err != nil {
			t.Fatalf("%d of %d, limit %d: %v", c.t, c.n, c.limit, err)
		}
		if b.PerRealm != c.perRealm || b.AgainstHosts != c.hosts || b.AgainstRealms != c.strongest || b.NoBound {
			t.Errorf("%d of %d, limit %d: L %d, bounds %d / %d; want %d, %d / %d", c.t, c.n, c.limit, b.PerRealm, b.AgainstHosts, b.AgainstRealms, c.perRealm, c.hosts, c.strongest)
		}
		if b.UserTries != uint(c.n)*c.perRealm/uint(c.t) {
			t.Errorf("%d of %d: user tries %d", c.t, c.n, b.UserTries)
		}
	}
	b, _ := DeriveRealmBounds(10, 2, secureRealms(3, 100), false)
	if want := "each realm allows 5 failed tries; at most 10 password guesses by someone who controls the servers and one realm, at most 7 by someone who controls only the servers"; b.Sentence() != want {
		t.Errorf("sentence %q", b.Sentence())
	}
	if _, err := DeriveRealmBounds(1, 2, secureRealms(3, 100), false); err == nil || !strings.Contains(err.Error(), "with 2 of 3 realms the smallest limit is 2") {
		t.Errorf("limit 1 for 2 of 3: %v", err)
	}
	in := secureRealms(3, 100)
	in[1].MaxLimit = 4
	if _, err := DeriveRealmBounds(10, 2, in, false); err == nil || !strings.Contains(err.Error(), `realm B allows at most 4`) {
		t.Errorf("L 5 above realm B's maximum of 4: %v", err)
	}
	if _, err := DeriveRealmBounds(9, 2, in, false); err != nil {
		t.Errorf("L 4 at realm B's maximum: %v", err)
	}
	for _, tn := range [][2]int{{1, 3}, {2, 4}, {3, 2}, {1, 1}, {5, 9}} {
		if _, err := DeriveRealmBounds(10, tn[0], secureRealms(tn[1], 100), false); err == nil {
			t.Errorf("%d of %d accepted", tn[0], tn[1])
		}
	}
}

// Insecure realms are compromised realms (12.4): the host-only figure is
// ⌊(n−c_ins)·L/(t−c_ins)⌋, c_ins ≥ t has no bound at all, and any insecure
// realm is refused without --insecure.
func TestInsecureRealmsCountAsCompromised(t *testing.T) {
	in := secureRealms(5, 100)
	in[0].Insecure = true
	if _, err := DeriveRealmBounds(10, 3, in, false); err == nil || !strings.Contains(err.Error(), "INSECURE") {
		t.Errorf("an insecure realm without --insecure: %v", err)
	}
	b, err := DeriveRealmBounds(10, 3, in, true)
	if err != nil {
		t.Fatal(err)
	}
	// 3 of 5, L 3, c_ins 1: ⌊4·3/2⌋ = 6 instead of ⌊5·3/3⌋ = 5; the
	// strongest bound (c = t − 1) stays (n − t + 1)·L = 9.
	if b.Insecure != 1 || b.AgainstHosts != 6 || b.AgainstRealms != 9 || b.NoBound || !strings.Contains(b.Sentence(), "1 insecure realm counted as compromised") {
		t.Errorf("one insecure realm: %+v, %q", b, b.Sentence())
	}
	in[1].Insecure, in[2].Insecure = true, true
	if _, err := DeriveRealmBounds(10, 3, in, false); !errors.Is(err, ErrNoGuessBound) {
		t.Errorf("3 insecure realms of 3 of 5 without --insecure: %v", err)
	}
	b, err = DeriveRealmBounds(10, 3, in, true)
	if err != nil {
		t.Fatal(err)
	}
	if !b.NoBound || b.AgainstHosts != 0 || b.AgainstRealms != 0 || !strings.HasPrefix(b.Sentence(), "no guess bound: the servers' operators can test passwords offline") {
		t.Errorf("c_ins = t: %+v, %q", b, b.Sentence())
	}
}

// 12.5: the largest k with Σ min(r_i, k) ≥ t·k.
func TestTriesAcrossRealms(t *testing.T) {
	for _, c := range []struct {
		t    int
		left []uint
		want uint
	}{
		{2, []uint{5, 5, 5}, 7},
		{2, []uint{3, 3, 5}, 5},
		{2, []uint{0, 0, 5}, 0},
		{2, []uint{1, 0, 5}, 1},
		{3, []uint{3, 3, 3, 3, 3}, 5},
		{2, []uint{4, 4}, 4},
		{2, nil, 0},
	} {
		if got := TriesAcross(c.t, c.left); got != c.want {
			t.Errorf("t %d, left %v: %d tries, want %d", c.t, c.left, got, c.want)
		}
	}
}

// The set's shape is checked when the configuration is read: t > n/2,
// 2 ≤ n ≤ 8, and one device never counted twice (REALMS.md 4, rule 3).
func TestRealmsConfigRefusesBadSets(t *testing.T) {
	entry := func(name, signing string) *RealmEntry {
		e := &RealmEntry{Name: name, Server: "https://" + name + ".example", Token: "t", ProvisioningKey: strings.Repeat("ab", 32)}
		if signing != "" {
			e.Vault = &VaultInfo{Name: name, MaxLimit: 10, SigningKey: signing, FirmwareHash: strings.Repeat("00", 32)}
		}
		return e
	}
	k1, k2, k3 := strings.Repeat("01", 32), strings.Repeat("02", 32), strings.Repeat("03", 32)
	good := func() *RealmsConfig {
		return &RealmsConfig{Threshold: 2, Set: []*RealmEntry{entry("A", k1), entry("B", k2), entry("C", k3)}}
	}
	if err := good().validate(); err != nil {
		t.Fatalf("good set: %v", err)
	}
	for name, bad := range map[string]func(*RealmsConfig){
		"same signing key": func(rc *RealmsConfig) { rc.Set[2].Vault.SigningKey = k1 },
		"t = n/2":          func(rc *RealmsConfig) { rc.Set = append(rc.Set, entry("D", "")) },
		"t > n":            func(rc *RealmsConfig) { rc.Threshold = 4 },
		"one realm":        func(rc *RealmsConfig) { rc.Set, rc.Threshold = rc.Set[:1], 1 },
		"nine realms": func(rc *RealmsConfig) {
			for i := range 6 {
				rc.Set = append(rc.Set, entry(string(rune('D'+i)), ""))
			}
			rc.Threshold = 5
		},
		"same name":  func(rc *RealmsConfig) { rc.Set[1].Name = "A" },
		"no token":   func(rc *RealmsConfig) { rc.Set[0].Token = "" },
		"bad anchor": func(rc *RealmsConfig) { rc.Anchor = "00" },
		"bad set id": func(rc *RealmsConfig) { rc.SetID = strings.Repeat("00", 15) },
		"wrong version": func(rc *RealmsConfig) {
			rc.Version = &RealmVersion{ManifestHash: strings.Repeat("00", 32), Manifest: "AAAA"}
		},
	} {
		rc := good()
		bad(rc)
		if err := rc.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Rule 6: the warnings name the realms that share an operator's marks.
	rc := good()
	rc.Set[2].Server = "https://A.example:8443"
	rc.Set[1].Vault.Insecure = true
	var what []string
	for _, w := range rc.Warnings(nil) {
		what = append(what, w.What+":"+strings.Join(w.Realms, ","))
	}
	if got := strings.Join(what, " "); got != "provisioning key:A,B,C host:A,C firmware:A,B,C insecure:B" {
		t.Errorf("warnings %q", got)
	}
}
