package releaselog_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

func TestPolicyMaxAgeText(t *testing.T) {
	l := releaselogtest.New(t, "releases.coffer.test", 2)
	base := l.Policy(2).String()
	for _, tc := range []struct {
		line  string
		want  time.Duration
		print string
	}{
		{"max-age 168h", 168 * time.Hour, "168h"},
		{"max-age 90m", 90 * time.Minute, "90m"},
		{"max-age 3600s", time.Hour, "1h"},
		{"max-age 1m", time.Minute, "1m"},
		{"max-age 8760h", 8760 * time.Hour, "8760h"},
	} {
		p, err := releaselog.ParsePolicy([]byte(tc.line + "\n" + base))
		if err != nil || p.MaxAge != tc.want {
			t.Errorf("%q: %v, max-age %v", tc.line, err, p)
			continue
		}
		if !strings.HasSuffix(p.String(), "quorum 2\nmax-age "+tc.print+"\n") {
			t.Errorf("%q prints as\n%s", tc.line, p)
		}
		if back, err := releaselog.ParsePolicy([]byte(p.String())); err != nil || back.MaxAge != tc.want {
			t.Errorf("%q does not read back: %v", tc.line, err)
		}
	}
	if p, err := releaselog.ParsePolicy([]byte(base)); err != nil || p.MaxAge != 0 || strings.Contains(p.String(), "max-age") {
		t.Errorf("a policy without max-age: %v %v", err, p)
	}
	for _, line := range []string{
		"max-age 0h", "max-age 59s", "max-age 8761h", "max-age 07h", "max-age 1.5h", "max-age 1h30m", "max-age 5 h",
		"max-age 5H", "max-age 5d", "max-age +5h", "max-age -5h", "max-age h", "max-age", "max-age 99999999999h",
		"max-age 168h\nmax-age 168h",
	} {
		if _, err := releaselog.ParsePolicy([]byte(base + line + "\n")); !errors.Is(err, releaselog.ErrBadPolicy) {
			t.Errorf("%q parsed: %v", line, err)
		}
	}
}

// A host keeps serving an old checkpoint, properly signed and witnessed, to
// hide a revocation logged since. With a max-age in the policy, a verifier
// with a clock refuses it unless a quorum of its cosignatures is recent.
func TestOldCheckpointIsStale(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := releaselogtest.New(t, "releases.coffer.test", 3)
	l.Append(releaselogtest.Release(1, "qemu", hash("a")))
	p := l.Policy(2)
	p.MaxAge = 168 * time.Hour
	day := 24 * time.Hour
	for _, tc := range []struct {
		name  string
		times []time.Time
		fresh bool
	}{
		{"both cosignatures an hour old", []time.Time{now.Add(-time.Hour), now.Add(-time.Hour)}, true},
		{"both exactly max-age old", []time.Time{now.Add(-7 * day), now.Add(-7 * day)}, true},
		{"both a second over max-age", []time.Time{now.Add(-7*day - time.Second), now.Add(-7*day - time.Second)}, false},
		{"both eight days old", []time.Time{now.Add(-8 * day), now.Add(-8 * day)}, false},
		{"one fresh, one old, quorum 2", []time.Time{now.Add(-time.Minute), now.Add(-30 * day)}, false},
		{"one fresh, one dated two hours ahead", []time.Time{now, now.Add(2 * time.Hour)}, false},
		{"one fresh, one dated 30 minutes ahead", []time.Time{now, now.Add(30 * time.Minute)}, true},
		{"fresh, old, fresh", []time.Time{now, now.Add(-30 * day), now.Add(-day)}, true},
		{"old, far future, old", []time.Time{now.Add(-30 * day), now.Add(365 * day), now.Add(-30 * day)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := l.CheckpointAtTimes(1, tc.times...)
			cp, err := p.VerifyCheckpoint(raw)
			if err != nil {
				t.Fatalf("without a clock the checkpoint verifies: %v", err)
			}
			for i, ts := range tc.times {
				if !cp.Cosigned[i].Equal(ts) {
					t.Errorf("cosignature %d dated %v, signed at %v", i, cp.Cosigned[i], ts)
				}
			}
			_, err = p.VerifyCheckpointAt(raw, now)
			if tc.fresh != (err == nil) || err != nil && !errors.Is(err, releaselog.ErrStaleCheckpoint) {
				t.Fatalf("fresh %v, got %v", tc.fresh, err)
			}
			// No max-age: the same checkpoint passes whatever its age.
			q := *p
			q.MaxAge = 0
			if _, err := q.VerifyCheckpointAt(raw, now); err != nil {
				t.Fatalf("with no max-age: %v", err)
			}
		})
	}
	// The refusal names the age and the newest cosignature.
	old := now.Add(-9 * day)
	_, err := p.VerifyCheckpointAt(l.CheckpointAtTimes(1, old, old.Add(-day), now.Add(3*time.Hour)), now)
	var se *releaselog.StaleError
	if !errors.As(err, &se) || !se.WitnessedAt.Equal(old.Add(-day)) || !se.Newest.Equal(old) || se.Future != 1 {
		t.Fatalf("%#v", err)
	}
	for _, want := range []string{"max-age 168h", "in the last 7 days", "10 days ago", old.Format(time.RFC3339), "1 cosignatures are dated more than"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}
