package releaselog

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of a policy's max-age, and how far ahead of the verifier's clock a
// cosignature may be dated and still count (RELEASES.md, section 4).
const (
	MinMaxAge     = time.Minute
	MaxMaxAge     = 365 * 24 * time.Hour
	MaxFutureSkew = time.Hour
)

// ErrStaleCheckpoint: signed and witnessed, but fewer than the policy's
// quorum of witnesses cosigned it within its max-age: an old checkpoint,
// which a host can keep serving to hide what the log added since (a
// revocation). Returned as a *StaleError.
var ErrStaleCheckpoint = errors.New("releaselog: the checkpoint is older than the policy's max-age")

// StaleError says how old a checkpoint's witnessing is.
type StaleError struct {
	MaxAge time.Duration
	Quorum int
	Now    time.Time // the verifier's clock
	// WitnessedAt is when Quorum of the witnesses had cosigned (the
	// Quorum-th newest cosignature that counts); zero if fewer than Quorum
	// count.
	WitnessedAt time.Time
	// Newest is the newest cosignature that counts (zero: none).
	Newest time.Time
	// Future is how many cosignatures were dated more than MaxFutureSkew
	// after Now, and did not count.
	Future int
}

func (e *StaleError) Error() string {
	s := fmt.Sprintf("%v (max-age %s): %d witnesses must have cosigned it in the last %s", ErrStaleCheckpoint, formatMaxAge(e.MaxAge), e.Quorum, Age(e.MaxAge))
	switch {
	case !e.WitnessedAt.IsZero():
		s += fmt.Sprintf("; %d last cosigned it at %s, %s ago (its newest cosignature is from %s)",
			e.Quorum, e.WitnessedAt.UTC().Format(time.RFC3339), Age(e.Now.Sub(e.WitnessedAt)), e.Newest.UTC().Format(time.RFC3339))
	case !e.Newest.IsZero():
		s += fmt.Sprintf("; fewer than %d of its cosignatures count, the newest from %s, %s ago",
			e.Quorum, e.Newest.UTC().Format(time.RFC3339), Age(e.Now.Sub(e.Newest)))
	default:
		s += "; none of its cosignatures counts"
	}
	if e.Future > 0 {
		s += fmt.Sprintf("; %d cosignatures are dated more than %s after this clock (%s) and do not count: check the clock",
			e.Future, Age(MaxFutureSkew), e.Now.UTC().Format(time.RFC3339))
	}
	return s
}

func (e *StaleError) Unwrap() error { return ErrStaleCheckpoint }

// WitnessedAt is when quorum of the witnesses had cosigned cp, as seen at
// now: the quorum-th newest of its cosignature times, leaving out any dated
// more than MaxFutureSkew after now. ok is false when fewer than quorum
// count.
func (cp *Checkpoint) WitnessedAt(quorum int, now time.Time) (at time.Time, ok bool) {
	ts := cp.counted(now)
	if quorum < 1 || len(ts) < quorum {
		return time.Time{}, false
	}
	return ts[quorum-1], true
}

// counted is cp's cosignature times that count at now, newest first.
func (cp *Checkpoint) counted(now time.Time) []time.Time {
	var ts []time.Time
	for _, t := range cp.Cosigned {
		if !t.After(now.Add(MaxFutureSkew)) {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
	return ts
}

// CheckFresh reports whether cp, verified under p, is fresh at now: with no
// max-age, always; else at least Quorum of its witnesses cosigned it at
// most MaxAge before now (and not more than MaxFutureSkew after it). Else a
// *StaleError (ErrStaleCheckpoint).
func (p *Policy) CheckFresh(cp *Checkpoint, now time.Time) error {
	if p.MaxAge == 0 {
		return nil
	}
	at, ok := cp.WitnessedAt(p.Quorum, now)
	if ok && now.Sub(at) <= p.MaxAge {
		return nil
	}
	e := &StaleError{MaxAge: p.MaxAge, Quorum: p.Quorum, Now: now, Future: len(cp.Cosigned) - len(cp.counted(now))}
	if ok {
		e.WitnessedAt = at
	}
	if ts := cp.counted(now); len(ts) > 0 {
		e.Newest = ts[0]
	}
	return e
}

// VerifyCheckpointAt is VerifyCheckpoint, and then, for a policy with a
// max-age, CheckFresh at now: what a verifier with a clock checks.
func (p *Policy) VerifyCheckpointAt(raw []byte, now time.Time) (*Checkpoint, error) {
	cp, err := p.VerifyCheckpoint(raw)
	if err != nil {
		return nil, err
	}
	if err := p.CheckFresh(cp, now); err != nil {
		return nil, err
	}
	return cp, nil
}

// maxAgeUnits are the units of a max-age, largest first.
var maxAgeUnits = []struct {
	suffix string
	unit   time.Duration
}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}

// parseMaxAge reads a max-age: a decimal number without leading zeroes and
// one unit, s, m or h ("168h", "90m"), within MinMaxAge and MaxMaxAge.
func parseMaxAge(s string) (time.Duration, error) {
	for _, u := range maxAgeUnits {
		digits, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		if digits == "" || len(digits) > 9 || digits[0] == '0' {
			break
		}
		n, err := strconv.ParseUint(digits, 10, 32)
		if err != nil {
			break
		}
		d := time.Duration(n) * u.unit
		if d < MinMaxAge || d > MaxMaxAge {
			return 0, fmt.Errorf("max-age %s: from %s to %s", s, formatMaxAge(MinMaxAge), formatMaxAge(MaxMaxAge))
		}
		return d, nil
	}
	return 0, fmt.Errorf("max-age %q: a whole number and one unit, s, m or h (e.g. 168h)", s)
}

// formatMaxAge spells a max-age as the policy's text does: in the largest
// unit that divides it.
func formatMaxAge(d time.Duration) string {
	for _, u := range maxAgeUnits {
		if d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.suffix
		}
	}
	return d.String() // not a whole number of seconds: Check refuses it
}

// Age spells a duration for people: days, hours or minutes, rounded down
// to the largest that makes it at least 2 (seconds under two minutes).
func Age(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + Age(-d)
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return fmt.Sprintf("%d seconds", d/time.Second)
}
