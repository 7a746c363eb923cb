package vaulttest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/cofferhsm/coffer/"

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
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("vaulttest/%s: no Go files (%v)", dir, err)
	}
	var ours []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(path, module); ok && !slices.Contains(ours, rel) {
				ours = append(ours, rel)
			}
		}
	}
	slices.Sort(ours)
	return ours
}
