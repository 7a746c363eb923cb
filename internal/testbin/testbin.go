// Package testbin builds commands of this module for tests that run them as
// processes, as a user or operator runs them. For tests only.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Build builds the packages (import paths of commands) into dir with the go
// tool that runs the tests (go on PATH, else GOROOT's), and reports the
// build's own output on failure.
func Build(dir string, pkgs ...string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	if out, err := exec.Command(goTool, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// Once is a set of commands built once per test binary, on first use, into
// a folder of their own, which Remove deletes (from TestMain, after the
// tests ran: the commands outlive any one test).
type Once struct {
	pkgs []string
	once sync.Once
	dir  string
	err  error
}

// NewOnce returns the set of the packages, not built yet.
func NewOnce(pkgs ...string) *Once { return &Once{pkgs: pkgs} }

// Dir builds the commands if no test has yet and returns their folder, or
// fails t with the build's output.
func (o *Once) Dir(t testing.TB) string {
	t.Helper()
	o.once.Do(func() {
		if o.dir, o.err = os.MkdirTemp("", "coffer-testbin-"); o.err == nil {
			o.err = Build(o.dir, o.pkgs...)
		}
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.dir
}

// Path is the built command name, built first if need be.
func (o *Once) Path(t testing.TB, name string) string { return filepath.Join(o.Dir(t), name) }

// Remove deletes the folder, if the commands were built. Call it once the
// tests have run.
func (o *Once) Remove() {
	if o.dir != "" {
		os.RemoveAll(o.dir)
	}
}
