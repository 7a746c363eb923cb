package main

import (
	"flag"
	"regexp"
	"strings"
	"testing"
)

// TestUsageListsEveryFlag: every flag a command defines is in its
// synopsis, which `coffer help`, `coffer help COMMAND`, `coffer COMMAND
// --help` and the usage after a mistake all show. A flag added to a
// command and not to its usage fails here.
func TestUsageListsEveryFlag(t *testing.T) {
	c := &cli{}
	for _, cmd := range commands {
		fs := c.flagsOf(cmd)
		if fs == nil {
			t.Errorf("coffer %s: no flag set (its run function must define its flags with c.flags before anything else)", cmd.name)
			continue
		}
		usage := strings.Join(cmd.usage, "\n")
		for _, u := range cmd.usage {
			if !strings.HasPrefix(u, cmd.name) {
				t.Errorf("coffer %s: synopsis %q does not start with the command", cmd.name, u)
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if globalFlags[f.Name] {
				return
			}
			re := regexp.MustCompile(`(^|[\s\[(|])` + regexp.QuoteMeta(dashes(f.Name)) + `($|[\s\]=)|])`)
			if !re.MatchString(usage) {
				t.Errorf("coffer %s: flag %s is not in its usage:\n%s", cmd.name, dashes(f.Name), usage)
			}
		})
	}
}

// TestCommandNames: one command per name, dispatch finds each by its
// words, and a group's name finds its commands.
func TestCommandNames(t *testing.T) {
	seen := map[string]bool{}
	for _, cmd := range commands {
		if seen[cmd.name] {
			t.Errorf("coffer %s twice", cmd.name)
		}
		seen[cmd.name] = true
		got, rest := findCommand(append(strings.Fields(cmd.name), "ARG"))
		if got != cmd || len(rest) != 1 {
			t.Errorf("findCommand(%s ARG) = %v %q", cmd.name, got, rest)
		}
		if cmd.summary == "" || cmd.help == "" || len(cmd.usage) == 0 || cmd.run == nil {
			t.Errorf("coffer %s lacks a summary, help, usage or run", cmd.name)
		}
	}
	if g := group("key"); len(g) != 2 {
		t.Errorf("group key: %d commands", len(g))
	}
	if cmd, _ := findCommand([]string{"realms", "burn", "x"}); cmd == nil || cmd.name != "realms burn" {
		t.Errorf("realms burn x found %v", cmd)
	}
}
