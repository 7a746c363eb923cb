package vaulttest

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/depcheck"
)

// TestEachPackageImportsOnlyItsPurpose pins the split: the test client needs
// the OPAQUE code and the wire contract and nothing else of ours; the store,
// the measurements and the buffer need nothing of ours, and no piece leans
// on another, so that a test importing one does not pull in the rest.
func TestEachPackageImportsOnlyItsPurpose(t *testing.T) {
	want := map[string][]string{
		"testclient": {"applet/opaque", "protocol"},
		"memstore":   nil,
		"measure":    nil,
		"syncbuf":    nil,
		"realmtest":  {"protocol", "protocol/realmkey"},
	}
	dirs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, known := want[d.Name()]; d.IsDir() && !known {
			t.Errorf("vaulttest/%s is not in this test: say what it may import", d.Name())
		}
	}
	for pkg, allowed := range want {
		got := ourImports(t, pkg)
		if !slices.Equal(got, allowed) {
			t.Errorf("vaulttest/%s imports %q of ours, want %q", pkg, got, allowed)
		}
	}
}

// ourImports lists, sorted, the repository packages that the non-test files
// of dir import, relative to the module.
func ourImports(t *testing.T, dir string) []string {
	t.Helper()
	var ours []string
	for _, p := range depcheck.Imports(t, dir) {
		if rel, ok := strings.CutPrefix(p, depcheck.Module+"/"); ok {
			ours = append(ours, rel)
		}
	}
	return ours
}
