package main

import (
	"path/filepath"
	"runtime"
	"testing"
)

func TestToolchainName(t *testing.T) {
	for v, want := range map[string]string{
		"v1.26.0":                                     "tamago-go1.26.0",
		"v1.25.7-0.20260130090423-5d846371fd71":       "tamago-go1.25.6",
		"v1.25.7-0.20260130090423-5d846371fd71+dirty": "tamago-go1.25.6",
		"v1.26.0+dirty":                               "tamago-go1.26.0",
	} {
		if got, err := toolchainName(v); err != nil || got != want {
			t.Errorf("toolchainName(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"", "v2.0.0", "1.26.0", "v1.26", "v1.26.x", "v1.26.01", "v1.26.0-0.20260130090423-5d846371fd71", "v1.26.1-"} {
		if got, err := toolchainName(v); err == nil {
			t.Errorf("toolchainName(%q) = %q, want an error", v, got)
		}
	}
}

// The folder follows the user cache folder as Go defines it, not a
// make-side guess: here, XDG_CACHE_HOME wins over HOME.
func TestToolchainRootIsUnderTheUserCacheDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the XDG rule is Linux's")
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", t.TempDir())
	got, err := toolchainRoot("v1.26.0")
	if want := filepath.Join(cache, "tamago-go", "tamago-go1.26.0"); err != nil || got != want {
		t.Fatalf("toolchainRoot = %q, %v; want %q", got, err, want)
	}
}
