package storage_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The shape this package exists for: the storage contracts sit at the
// bottom, and what provides or carries storage (the boards, the Trusted OS,
// the applet's runtime) does not depend on the record store. Imports are
// read from the source of every file whatever its build tags (the boards'
// hardware files are tamago-only), test files excepted.

const module = "github.com/cofferhsm/coffer"

// moduleImports maps each package of the module to the module packages its
// non-test files import.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(b), "module "+module+"\n") {
		t.Fatalf("%s is not the module root (%v)", root, err)
	}
	graph := make(map[string][]string)
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "build" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := module
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		if _, ok := graph[pkg]; !ok {
			graph[pkg] = nil
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if (p == module || strings.HasPrefix(p, module+"/")) && !slices.Contains(graph[pkg], p) {
				graph[pkg] = append(graph[pkg], p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

// path returns a chain of imports from pkg to target, or nil.
func path(graph map[string][]string, pkg, target string) []string {
	seen := map[string]bool{}
	var walk func(p string) []string
	walk = func(p string) []string {
		if p == target {
			return []string{p}
		}
		if seen[p] {
			return nil
		}
		seen[p] = true
		for _, q := range graph[p] {
			if chain := walk(q); chain != nil {
				return append([]string{p}, chain...)
			}
		}
		return nil
	}
	return walk(pkg)
}

func TestStorageIsALeaf(t *testing.T) {
	graph := moduleImports(t)
	if _, ok := graph[module+"/internal/storage"]; !ok {
		t.Fatal("internal/storage not found")
	}
	if imps := graph[module+"/internal/storage"]; len(imps) != 0 {
		t.Fatalf("internal/storage imports %v; it must import nothing of the module", imps)
	}
}

func TestBoardsOSAndRuntimeDoNotDependOnTheStore(t *testing.T) {
	graph := moduleImports(t)
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
			if chain := path(graph, r, banned); chain != nil {
				t.Errorf("%s depends on %s: %s", r, banned, strings.Join(chain, " -> "))
			}
		}
	}
}

// Test support stays out of the product: only test files import storetest.
func TestNoProductCodeImportsStoretest(t *testing.T) {
	graph := moduleImports(t)
	for pkg, imps := range graph {
		if slices.Contains(imps, module+"/applet/store/storetest") {
			t.Errorf("%s imports applet/store/storetest outside its tests", pkg)
		}
	}
}
