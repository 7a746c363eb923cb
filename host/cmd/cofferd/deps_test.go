package main

import (
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/depcheck"
)

// trustedCode marks the packages whose code belongs to the vault: the
// Trusted Applet and portable vault logic, the Trusted OS, the boards, the
// vault's storage contracts, the server side of OPAQUE and its OPRF, and the
// realms' threshold VOPRF and key schedule (protocol/realmkey, on circl's
// DLEQ proofs: REALMS.md, section 5). The tools under firmware/cmd run on
// ordinary machines and are not.
var trustedCode = []string{
	depcheck.Module + "/applet",
	depcheck.Module + "/board",
	depcheck.Module + "/firmware",
	depcheck.Module + "/internal/storage",
	depcheck.Module + "/protocol/realmkey",
	"github.com/cloudflare/circl/oprf",
	"github.com/cloudflare/circl/zk/dleq",
	"github.com/bytemare/opaque",
}

var notTrusted = []string{depcheck.Module + "/firmware/cmd"}

func isTrusted(pkg string) bool {
	return depcheck.Under(pkg, trustedCode...) && !depcheck.Under(pkg, notTrusted...)
}

// TestUntrustedCommandsLinkNoTrustedCode: cofferd runs on the operator's
// machine, which the design does not trust, and the provisioning command
// vouches for devices from outside them; neither may carry the vault's code
// (DESIGN.md, "Trust domains"). Test imports are not counted: go list -deps
// without -test lists what the binary links.
func TestUntrustedCommandsLinkNoTrustedCode(t *testing.T) {
	for _, cmd := range []string{
		depcheck.Module + "/host/cmd/cofferd",
		depcheck.Module + "/firmware/cmd/coffer-provision",
	} {
		t.Run(cmd[strings.LastIndex(cmd, "/")+1:], func(t *testing.T) {
			var bad []string
			for _, pkg := range depcheck.Deps(t, cmd) {
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

// cofferdAlsoLinksNone are packages cofferd must not link besides the
// vault's code: the client (it holds the user's secrets on the user's
// device) and the realm key schedule with its group arithmetic (REALMS.md:
// protocol/realmkey is never imported by host/), nor anything of circl.
var cofferdAlsoLinksNone = []string{
	depcheck.Module + "/client",
	depcheck.Module + "/protocol/realmkey",
	"github.com/cloudflare/circl",
}

// TestCofferdLinksNoClientOrRealmKey: the realm relay and storage work on
// clear routing fields and opaque bytes only; the day someone reaches for
// the client library or the threshold VOPRF in cofferd, this fails.
func TestCofferdLinksNoClientOrRealmKey(t *testing.T) {
	var bad []string
	for _, pkg := range depcheck.Deps(t, depcheck.Module+"/host/cmd/cofferd") {
		if depcheck.Under(pkg, cofferdAlsoLinksNone...) {
			bad = append(bad, pkg)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("cofferd links:\n  %s", strings.Join(bad, "\n  "))
	}
}
