package bootcheck

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// TestMarker names the keys and origin of a TEST policy, such as the QEMU
// tests' (firmware/qemutest/testdata/boot-policy-TEST-ONLY.txt), whose
// private keys are committed next to it.
const TestMarker = "TEST-ONLY"

// ErrTestPolicy: the bootloader's compiled-in policy is a TEST one and the
// device's secure boot is closed.
var ErrTestPolicy = errors.New("the compiled-in release log policy is a TEST policy, whose private keys are public, and this device's secure boot is closed")

// IsTestPolicy reports whether the policy's origin, release key or any
// witness key is marked TEST-ONLY: whoever reads the repository can sign
// under it (a witness suffices to fake part of a quorum). firmware.mk
// applies the same rule to the BOOT_POLICY file's origin, log and witness
// lines.
func IsTestPolicy(p *releaselog.Policy) bool {
	if strings.Contains(p.Origin, TestMarker) || strings.Contains(p.LogKey, TestMarker) {
		return true
	}
	for _, w := range p.Witnesses {
		if strings.Contains(w, TestMarker) {
			return true
		}
	}
	return false
}

// CheckPolicy decides whether a bootloader with policy compiled in may boot
// anything on this device. A TEST policy is for emulators and open
// development boards; with secure boot closed the bootloader can only have
// been HAB-signed with the owner's key by mistake, and would boot any OS
// anyone signs with the committed keys: refused (the build refuses it too,
// without DEV=1).
func CheckPolicy(p *releaselog.Policy, secureBootClosed bool) error {
	if secureBootClosed && IsTestPolicy(p) {
		return fmt.Errorf("%w (origin %q)", ErrTestPolicy, p.Origin)
	}
	return nil
}
