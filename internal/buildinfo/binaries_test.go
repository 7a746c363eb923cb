package buildinfo

import (
	"bytes"
	debugbuildinfo "debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// binaries are every command of the module that runs on an ordinary
// machine (the firmware's own images are not run by anyone).
var binaries = []string{
	"client/cmd/coffer",
	"client/cmd/coffer-monitor",
	"host/cmd/cofferd",
	"applet/softvault/cmd/softvault",
	"firmware/cmd/coffer-provision",
	"firmware/cmd/coffer-release",
	"firmware/cmd/coffer-witness",
	"firmware/cmd/fwimage",
}

// TestEveryBinaryVersion builds every command and runs NAME --version: it
// prints, on stdout with status 0, its name and what the toolchain
// recorded in the file it runs from (module version, revision, modified,
// Go version).
func TestEveryBinaryVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every command")
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, b := range binaries {
		args = append(args, "github.com/cofferhsm/coffer/"+b)
	}
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, b := range binaries {
		name := filepath.Base(b)
		bin := filepath.Join(dir, name)
		bi, err := debugbuildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		want := name + " " + FromBuildInfo(bi).String()
		for _, flag := range []string{"--version", "-version"} {
			cmd := exec.Command(bin, flag)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if err != nil || errb.Len() != 0 || strings.TrimSpace(out.String()) != want {
				t.Errorf("%s %s: %v\nstdout: %s\nstderr: %s\nwant: %s", name, flag, err, out.String(), errb.String(), want)
			}
		}
	}
}
