package main

import (
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
)

// TestNewPasswordWarnings: a script's weak password (zxcvbn below 3) is
// used, with a warning, since no one is there to ask; --limit 1 says that
// one typo erases the key. A strong password and the default limit say
// neither.
func TestNewPasswordWarnings(t *testing.T) {
	if testing.Short() {
		t.Skip("real Argon2id")
	}
	for _, c := range []struct {
		password     string
		limit        []string
		weak, limit1 bool
	}{
		{"password1", []string{"--limit", "1"}, true, true},
		{"violet quarry tundra hopscotch", nil, false, false},
	} {
		host := fakehost.New(t, fakehost.Options{})
		e := newEnv(t)
		e.vars["COFFER_PASSWORD"] = c.password
		args := append([]string{"init", "--password", "--server", host.URL, "--token", host.Token, "--provisioning-key", host.ProvisioningKeyHex()}, e.pinLog(host).args()...)
		r := e.ok(append(args, c.limit...)...)
		if got := strings.Contains(r.stderr, "password is weak"); got != c.weak {
			t.Errorf("%q: weak warning %v, want %v:\n%s", c.password, got, c.weak, r.stderr)
		}
		if got := strings.Contains(r.stderr, "--limit 1: a single wrong password"); got != c.limit1 {
			t.Errorf("limit %v: warning %v, want %v:\n%s", c.limit, got, c.limit1, r.stderr)
		}
		if strings.Contains(r.stderr, c.password) {
			t.Errorf("the password is in the output:\n%s", r.stderr)
		}
	}
}
