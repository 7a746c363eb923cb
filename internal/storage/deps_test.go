package storage_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/depcheck"
)

// The shape this package exists for: the storage contracts sit at the
// bottom, and what provides or carries storage (the boards, the Trusted OS,
// the applet's runtime) does not depend on the record store. Imports are
// read from the source of every file whatever its build tags (the boards'
// hardware files are tamago-only), test files excepted.

const module = depcheck.Module

func TestStorageIsALeaf(t *testing.T) {
	graph := depcheck.Graph(t)
	if _, ok := graph[module+"/internal/storage"]; !ok {
		t.Fatal("internal/storage not found")
	}
	if imps := graph[module+"/internal/storage"]; len(imps) != 0 {
		t.Fatalf("internal/storage imports %v; it must import nothing of the module", imps)
	}
}

func TestBoardsOSAndRuntimeDoNotDependOnTheStore(t *testing.T) {
	graph := depcheck.Graph(t)
	var roots []string
	for pkg := range graph {
		if pkg == module+"/board" || strings.HasPrefix(pkg, module+"/board/") {
			roots = append(roots, pkg)
		}
	}
	if len(roots) < 3 {
		t.Fatalf("found only the board packages %v", roots)
	}
	roots = append(roots, module+"/firmware/tos", module+"/applet/runtime")
	for _, r := range roots {
		if _, ok := graph[r]; !ok {
			t.Fatalf("%s not found", r)
		}
		for _, banned := range []string{module + "/applet/store", module + "/applet/store/storetest"} {
			if chain := depcheck.Chain(graph, r, banned); chain != nil {
				t.Errorf("%s depends on %s: %s", r, banned, strings.Join(chain, " -> "))
			}
		}
	}
}

// Test support stays out of the product: only test files import storetest.
func TestNoProductCodeImportsStoretest(t *testing.T) {
	graph := depcheck.Graph(t)
	for pkg, imps := range graph {
		if slices.Contains(imps, module+"/applet/store/storetest") {
			t.Errorf("%s imports applet/store/storetest outside its tests", pkg)
		}
	}
}
