package depcheck

import (
	"slices"
	"testing"
)

func TestUnderMatchesThePackageAndThoseBelow(t *testing.T) {
	for pkg, want := range map[string]bool{
		Module + "/applet":       true,
		Module + "/applet/vault": true,
		Module + "/appletx":      false,
		Module:                   false,
	} {
		if got := Under(pkg, Module+"/applet", "github.com/bytemare/opaque"); got != want {
			t.Errorf("Under(%s) = %v, want %v", pkg, got, want)
		}
	}
}

// Imports reads every non-test file whatever its build tags: the QEMU
// board's tamago-only file imports tamago's dma; only its test imports
// path/filepath.
func TestImportsReadsEveryBuildTagButNoTest(t *testing.T) {
	imps := Imports(t, "../../board/qemu")
	if !slices.Contains(imps, "github.com/usbarmory/tamago/dma") || slices.Contains(imps, "path/filepath") || !slices.IsSorted(imps) {
		t.Fatalf("imports of board/qemu: %v", imps)
	}
}

func TestChainFollowsImports(t *testing.T) {
	g := map[string][]string{"a": {"b", "c"}, "b": {"a"}, "c": {"d"}}
	if got := Chain(g, "a", "d"); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("chain a to d: %v", got)
	}
	if got := Chain(g, "b", "e"); got != nil {
		t.Fatalf("chain to a package nothing imports: %v", got)
	}
}

// The graph is read from the module's source whatever the build tags, and
// keeps the module's packages only: the QEMU board's tamago-only file
// imports package board.
func TestGraphReadsEveryBuildTag(t *testing.T) {
	g := Graph(t)
	if qemu := g[Module+"/board/qemu"]; !slices.Contains(qemu, Module+"/board") || slices.ContainsFunc(qemu, func(p string) bool { return !Under(p, Module) }) {
		t.Fatalf("board/qemu imports %v", g[Module+"/board/qemu"])
	}
	if _, ok := g[Module+"/internal/depcheck"]; !ok {
		t.Fatal("the graph misses this package")
	}
}

// testSupport are the packages made for tests only; product code importing
// one would ship it. They may import each other.
var testSupport = []string{
	Module + "/applet/store/storetest",
	Module + "/applet/softvault/softvaulttest",
	Module + "/internal/depcheck",
	Module + "/internal/testwait",
}

func TestOnlyTestsImportTestSupport(t *testing.T) {
	for pkg, imps := range Graph(t) {
		if slices.Contains(testSupport, pkg) {
			continue
		}
		for _, imp := range imps {
			if slices.Contains(testSupport, imp) {
				t.Errorf("%s imports the test support %s outside its tests", pkg, imp)
			}
		}
	}
}
