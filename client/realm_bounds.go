package client

import (
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/protocol"
)

// RealmBounds are the guess bounds of a realm set (protocol/REALMS.md 12.2 to
// 12.5) for the limit the user gave.
type RealmBounds struct {
	Threshold, N int
	Limit        uint // the user's --limit: the bound against the hosts and t − 1 realms
	PerRealm     uint // L = ⌊limit/(n − t + 1)⌋, what each realm counts to
	Insecure     int  // c_ins: insecure realms, each counted as compromised (12.4)
	// NoBound: c_ins ≥ t, the insecure realms' hosts hold k between them
	// and test passwords offline; the figures below are then 0.
	NoBound bool
	// AgainstRealms bounds the passwords tested by someone who controls
	// every host and t − 1 realms: (n − t + 1)·L.
	AgainstRealms uint
	// AgainstHosts bounds them for someone who controls only the hosts
	// (and the insecure realms, which it holds anyway):
	// ⌊(n − c_ins)·L/(t − c_ins)⌋.
	AgainstHosts uint
	// UserTries is what the user has with every realm at L: ⌊n·L/t⌋ (12.5).
	UserTries uint
}

// RealmLimitInput is what the bounds need to know of one realm: its
// pinned bundle's maximum limit and insecure flag.
type RealmLimitInput struct {
	Name     string
	MaxLimit uint
	Insecure bool
}

// ErrNoGuessBound refuses a set in which the insecure realms reach the
// threshold, without --insecure.
var ErrNoGuessBound = errors.New("no guess bound: the servers' operators can test passwords offline")

// DeriveRealmBounds computes L from the user's limit (0: the default, 10)
// for a t-of-n set (12.3) and the bounds of 12.2 and 12.4. It refuses L = 0
// (a limit below n − t + 1), an L above any realm's maximum, and insecure
// realms without allowInsecure; with it, c_ins ≥ t gives NoBound.
func DeriveRealmBounds(limit uint, t int, realms []RealmLimitInput, allowInsecure bool) (*RealmBounds, error) {
	n := len(realms)
	if n < protocol.MinRealms || n > protocol.MaxRealms || 2*t <= n || t > n {
		return nil, fmt.Errorf("client: threshold %d of %d realms: it must be more than half and at most all, with 2 to 8 realms", t, n)
	}
	if limit == 0 {
		limit = protocol.DefaultLimit
	}
	spread := uint(n - t + 1)
	b := &RealmBounds{Threshold: t, N: n, Limit: limit, PerRealm: limit / spread}
	if b.PerRealm == 0 {
		return nil, fmt.Errorf("client: a limit of %d is too small: with %d of %d realms the smallest limit is %d "+
			"(each realm must allow at least one try, and the limit counts the tries of %s)", limit, t, n, spread, Plural(spread, "realm"))
	}
	var insecure []string
	for _, r := range realms {
		if b.PerRealm > r.MaxLimit {
			return nil, fmt.Errorf("client: a limit of %d means %d tries per realm, but realm %s allows at most %d; give a limit of at most %d",
				limit, b.PerRealm, QuoteName(r.Name), r.MaxLimit, r.MaxLimit*spread+spread-1)
		}
		if r.Insecure {
			insecure = append(insecure, r.Name)
		}
	}
	b.Insecure = len(insecure)
	if b.Insecure > 0 && !allowInsecure {
		if b.Insecure >= t {
			return nil, fmt.Errorf("client: %w: realms %s are insecure, as many as the threshold; refused without --insecure", ErrNoGuessBound, realmNames(insecure))
		}
		if len(insecure) == 1 {
			return nil, fmt.Errorf("client: %s is INSECURE (a software or emulated vault): it counts as compromised; refused without --insecure", realmSubject(insecure))
		}
		return nil, fmt.Errorf("client: %s are INSECURE (software or emulated vaults): they count as compromised; refused without --insecure", realmSubject(insecure))
	}
	if b.Insecure >= t {
		b.NoBound = true
		return b, nil
	}
	L := b.PerRealm
	b.AgainstRealms = spread * L
	b.AgainstHosts = uint(n-b.Insecure) * L / uint(t-b.Insecure)
	b.UserTries = uint(n) * L / uint(t)
	return b, nil
}

// Sentence is what the CLI says about the bounds (12.3, 12.4).
func (b *RealmBounds) Sentence() string {
	if b.NoBound {
		return ErrNoGuessBound.Error() + fmt.Sprintf(" (%d of the %d realms are insecure, as many as the threshold of %d): this is a test set", b.Insecure, b.N, b.Threshold)
	}
	realms := "one realm"
	if b.Threshold-1 != 1 {
		realms = fmt.Sprintf("%d realms", b.Threshold-1)
	}
	s := fmt.Sprintf("each realm allows %s; at most %d password guesses by someone who controls the servers and %s, at most %d by someone who controls only the servers",
		failedTries(b.PerRealm), b.AgainstRealms, realms, b.AgainstHosts)
	if b.Insecure > 0 {
		s += fmt.Sprintf(" (%d insecure %s counted as compromised: the servers' operators hold %s)", b.Insecure,
			map[bool]string{true: "realm", false: "realms"}[b.Insecure == 1], map[bool]string{true: "it", false: "them"}[b.Insecure == 1])
	}
	return s
}

// TriesAcross is the number of tries the user has left (12.5): the largest
// k with Σ_i min(r_i, k) ≥ t·k, where r_i are the tries left at the reachable
// realms holding the version. Choosing the t realms with the most tries left
// for every try achieves it.
func TriesAcross(t int, left []uint) uint {
	if t <= 0 {
		return 0
	}
	var total uint
	for _, r := range left {
		total += r
	}
	best := uint(0)
	for k := uint(1); k <= total/uint(t); k++ { // Σ min(r_i, k) ≤ Σ r_i bounds k
		var sum uint
		for _, r := range left {
			sum += min(r, k)
		}
		if sum >= uint(t)*k {
			best = k
		}
	}
	return best
}

func failedTries(n uint) string {
	if n == 1 {
		return "1 failed try"
	}
	return fmt.Sprintf("%d failed tries", n)
}

func tries(n uint) string {
	if n == 1 {
		return "1 try"
	}
	return fmt.Sprintf("%d tries", n)
}
