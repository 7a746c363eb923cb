package client

import (
	"errors"
	"strings"
	"testing"
)

// The figures of REALMS.md 11 step 8 with t = 2: "controlled 1 realm", not
// "1 realms".
func TestRecoverySummarySingular(t *testing.T) {
	r := &Recovery{Threshold: 2, Failed: 3, TriesLeft: 5}
	if s := r.Summary(); !strings.Contains(s, "if someone also controlled 1 realm)") {
		t.Errorf("summary %q", s)
	}
	r.Threshold = 3
	if s := r.Summary(); !strings.Contains(s, "if someone also controlled 2 realms)") {
		t.Errorf("summary %q", s)
	}
}

// One insecure realm is "realm X is INSECURE", in the set's warnings and in
// the refusal of the bounds.
func TestOneInsecureRealmIsSingular(t *testing.T) {
	rc := &RealmsConfig{Threshold: 2}
	for i, name := range []string{"realm-1", "realm-2", "realm-3"} {
		rc.Set = append(rc.Set, &RealmEntry{Name: name, Server: "https://" + name + ".example", ProvisioningKey: strings.Repeat("ab", 32),
			Vault: &VaultInfo{SigningKey: strings.Repeat(string(rune('a'+i)), 64), FirmwareHash: name, Insecure: i == 2}})
	}
	var text string
	for _, w := range rc.Warnings(nil) {
		if w.What == "insecure" {
			text = w.Text
		}
	}
	if !strings.HasPrefix(text, "realm realm-3 is INSECURE") {
		t.Errorf("warning %q", text)
	}
	_, err := DeriveRealmBounds(10, 2, []RealmLimitInput{{Name: "A", MaxLimit: 10}, {Name: "B", MaxLimit: 10}, {Name: "C", MaxLimit: 10, Insecure: true}}, false)
	if err == nil || !strings.Contains(err.Error(), "realm C is INSECURE") || !strings.Contains(err.Error(), "it counts as compromised") {
		t.Errorf("bounds refusal %v", err)
	}
}

// A change report whose old version may remain at one realm says "at up to
// 1 realm".
func TestChangeSummaryOneOldHolder(t *testing.T) {
	r := &ChangeReport{Kind: "change", CommitSent: true, Threshold: 2, Tolerance: 0, OldThreshold: 2, OldHolders: []string{"C"},
		Realms: []ChangeOutcome{{Name: "A", Reachable: true, Holds: true, Committed: true}, {Name: "B", Reachable: true, Holds: true, Committed: true},
			{Name: "C", Reachable: true, Holds: true, MayHoldOld: true}}}
	if s := r.Summary(); !strings.Contains(s, "at up to 1 realm;") {
		t.Errorf("summary %q", s)
	}
}

// REALMS.md 14: realms down before a version is agreed: the error starts
// with the counts and names each missing realm, and is still a quorum error
// and ErrNoAgreedVersion.
func TestNoAgreedVersionStartsWithTheCounts(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	f.register("pw", 10)
	f.realms[0].dev.setDown(true)
	f.realms[1].dev.setDown(true)
	_, err := f.recover("pw")
	var qe *QuorumError
	if !errors.As(err, &qe) || !errors.Is(err, ErrNoAgreedVersion) {
		t.Fatalf("two realms down: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "2 of 3 realms needed; 1 answered: realm A did not answer (") ||
		!strings.Contains(err.Error(), "realm B did not answer (") {
		t.Errorf("message %q", err)
	}
}
