package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// trustedCode marks the packages whose code belongs to the vault: the
// Trusted Applet and portable vault logic, the Trusted OS, the boards, the
// vault's storage contracts, and the server side of OPAQUE and its OPRF.
// The tools under firmware/cmd run on ordinary machines and are not.
var trustedCode = []string{
	"github.com/cofferhsm/coffer/applet/",
	"github.com/cofferhsm/coffer/board/",
	"github.com/cofferhsm/coffer/firmware/",
	"github.com/cofferhsm/coffer/internal/storage",
	"github.com/cloudflare/circl/oprf",
	"github.com/bytemare/opaque",
}

var notTrusted = []string{"github.com/cofferhsm/coffer/firmware/cmd/"}

func isTrusted(pkg string) bool {
	for _, p := range notTrusted {
		if strings.HasPrefix(pkg, p) {
			return false
		}
	}
	for _, p := range trustedCode {
		if pkg == strings.TrimSuffix(p, "/") || strings.HasPrefix(pkg, p) {
			return true
		}
	}
	return false
}

// TestUntrustedCommandsLinkNoTrustedCode: cofferd runs on the operator's
// machine, which the design does not trust, and the provisioning command
// vouches for devices from outside them; neither may carry the vault's code
// (DESIGN.md, "Trust domains"). Test imports are not counted: go list -deps
// without -test lists what the binary links.
func TestUntrustedCommandsLinkNoTrustedCode(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	for _, cmd := range []string{
		"github.com/cofferhsm/coffer/host/cmd/cofferd",
		"github.com/cofferhsm/coffer/firmware/cmd/coffer-provision",
	} {
		t.Run(cmd[strings.LastIndex(cmd, "/")+1:], func(t *testing.T) {
			out, err := exec.Command(goTool, "list", "-deps", cmd).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", cmd, err, out)
			}
			var bad []string
			for _, pkg := range strings.Fields(string(out)) {
				if isTrusted(pkg) {
					bad = append(bad, pkg)
				}
			}
			if len(bad) > 0 {
				t.Fatalf("%s links trusted code:\n  %s", cmd, strings.Join(bad, "\n  "))
			}
		})
	}
}
