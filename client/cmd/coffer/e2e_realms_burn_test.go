package main

// End to end of `coffer realms burn` (protocol/REALMS.md 13.3): a change
// forced while realm-3 was down leaves realm-3 holding only the old
// version, which nothing opens and which refuses the key's registration;
// burning it costs L counted evaluations, shown, and --register puts the
// key back there.

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestE2ERealmBurn(t *testing.T) {
	rs := newRealms(t, 3)
	u, _, _ := realmsUser(t, rs)
	rs[2].vault.proc.kill()
	rs[2].daemon.waitConnected(false, 10*time.Second)
	u.env["COFFER_NEW_PASSWORD"] = "second password"
	u.ok("password", "change", "--force", "--insecure")
	u.env["COFFER_PASSWORD"] = "second password"
	rs[2].vault.serve()
	rs[2].daemon.waitConnected(true, 30*time.Second)

	// The user's current version is never burned (rule 3), whatever is asked.
	u.fails([]string{"never burn it"}, "realms", "burn", "realm-1", "--yes", "--insecure")
	// Without a terminal and without --yes, nothing is evaluated.
	u.fails([]string{"give --yes"}, "realms", "burn", "realm-3", "--insecure")

	// On a terminal, --register asks for the password once the realm is
	// burned, and again after a wrong one, with the tries left.
	delete(u.env, "COFFER_PASSWORD")
	tty := u.startTTY("realms", "burn", "realm-3", "--yes", "--register", "--insecure")
	tty.expect(regexp.MustCompile(`Burn realm realm-3\?[^\n]*`))
	tty.expect(regexp.MustCompile(`its record is burned`))
	tty.expect(regexp.MustCompile(`Password[^:]*: `))
	tty.typeLine("wrong password")
	left := tty.expect(regexp.MustCompile(`wrong password; (\d+) tries? left across the realms`))[1]
	if asked := tty.expect(regexp.MustCompile(`Password \((\d+) tries? left across the realms\): `))[1]; asked != left {
		t.Fatalf("asked again with %s tries left, the wrong password left %s", asked, left)
	}
	tty.typeLine("second password")
	if code := tty.wait(); code != 0 {
		t.Fatalf("realms burn --register with the right password the second time: exit %d", code)
	}
	out := tty.out.String()
	t.Logf("realms burn:\n%s", out)
	for _, want := range []string{"which only 1 of the 3 realms of its manifest may hold (realm-3)",
		"counted evaluations with random inputs", "repair complete at 3 of 3 realms; your key survives the loss of 1 realm"} {
		if !strings.Contains(out, want) {
			t.Fatalf("realms burn lacks %q:\n%s", want, out)
		}
	}
	u.env["COFFER_PASSWORD"] = "second password"
	r := u.ok("realms", "--insecure")
	if strings.Count(r.stdout, "state:          live") != 3 || !strings.Contains(r.stdout, "registered over a burned record") {
		t.Fatalf("coffer realms after the burn:\n%s", r.stdout)
	}
	u.ok("key", "export-age", "--insecure")
}
