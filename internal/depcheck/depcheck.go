// Package depcheck reads what the module's packages import, for the tests
// that pin its shape (which package may depend on which). It offers two
// views: the imports written in a package's source, whatever the build tags
// (Imports, Graph), for rules that must hold on every board; and what a
// command links under the current build (Deps), for rules about binaries.
// It is test support: only _test files import it.
package depcheck

import (
	"bytes"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Module is the module's path.
const Module = "github.com/cofferhsm/coffer"

// Under reports whether pkg is one of prefixes or a package below one.
func Under(pkg string, prefixes ...string) bool {
	for _, p := range prefixes {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// Imports lists, sorted and without repeats, the packages that the non-test
// Go files in dir import, whatever their build tags.
func Imports(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no Go files (%v)", dir, err)
	}
	var imps []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(imps, p) {
				imps = append(imps, p)
			}
		}
	}
	slices.Sort(imps)
	return imps
}

// Graph maps each package of the module, found in the source tree around
// the test's working directory, to the module packages its non-test files
// import, whatever their build tags (the boards' hardware files are
// tamago-only).
func Graph(t testing.TB) map[string][]string {
	t.Helper()
	root := moduleRoot(t)
	graph := make(map[string][]string)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.IsDir() {
			return nil
		}
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "build" || name == "vendor") {
			return filepath.SkipDir
		}
		if code, _ := filepath.Glob(filepath.Join(path, "*.go")); !slices.ContainsFunc(code, func(f string) bool { return !strings.HasSuffix(f, "_test.go") }) {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		pkg := Module
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		graph[pkg] = slices.DeleteFunc(Imports(t, path), func(p string) bool { return !Under(p, Module) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

// moduleRoot is the folder, at or above the working directory, whose go.mod
// declares Module.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if !bytes.Contains(b, []byte("module "+Module+"\n")) {
				t.Fatalf("%s/go.mod is not module %s", dir, Module)
			}
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// Chain returns a chain of imports in graph from the package from to the
// package to, or nil if there is none.
func Chain(graph map[string][]string, from, to string) []string {
	seen := map[string]bool{}
	var walk func(p string) []string
	walk = func(p string) []string {
		if p == to {
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
	return walk(from)
}

// Deps lists the packages pkg links under the current build, itself
// included, as `go list -deps` reports them. Test imports do not count:
// without -test, go list lists what the binary links.
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}
