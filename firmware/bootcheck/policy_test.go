package bootcheck

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

const testPolicyFile = "../qemutest/testdata/boot-policy-TEST-ONLY.txt"

func testPolicy(t *testing.T) (*releaselog.Policy, []byte) {
	t.Helper()
	text, err := os.ReadFile(testPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := releaselog.ParsePolicy(text)
	if err != nil {
		t.Fatal(err)
	}
	return p, text
}

// A bootloader built with the committed TEST policy (whose private keys
// anyone can read) refuses to boot anything on a device whose secure boot
// is closed, where it could only have been signed by the owner's HAB key by
// mistake; on an emulator or an open device it boots (and warns). A policy
// with any TEST key in it counts; a real one passes.
func TestTestPolicyRefusedWithSecureBootClosed(t *testing.T) {
	p, _ := testPolicy(t)
	if !IsTestPolicy(p) {
		t.Fatal("the committed TEST policy is not recognised")
	}
	if err := CheckPolicy(p, true); !errors.Is(err, ErrTestPolicy) {
		t.Fatalf("TEST policy, secure boot closed: %v", err)
	}
	if err := CheckPolicy(p, false); err != nil {
		t.Fatalf("TEST policy, secure boot open: %v", err)
	}
	real := releaselogtest.New(t, "example.org/coffer/releases", 3).Policy(2)
	if IsTestPolicy(real) || CheckPolicy(real, true) != nil {
		t.Fatal("a real policy taken for a TEST one")
	}
	// The real log and release key, one committed TEST witness among them.
	mixed := *real
	mixed.Witnesses = append(append([]string(nil), real.Witnesses[:2]...), p.Witnesses[0])
	if err := CheckPolicy(&mixed, true); !errors.Is(err, ErrTestPolicy) {
		t.Fatalf("a policy with a TEST witness, secure boot closed: %v", err)
	}
}

// `make firmware BOARD=usbarmory` (and so `make imx`) refuses to build a
// bootloader whose policy is a TEST one, the default BOOT_POLICY or a copy
// of it, unless DEV=1; with a real policy, DEV=1, or for QEMU it builds.
// Runs make -n (nothing is built; the check is in the recipe's expansion).
func TestMakeRefusesATestPolicyForUSBArmory(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("SKIPPED: make not found")
	}
	_, text := testPolicy(t)
	dir := t.TempDir()
	copied := filepath.Join(dir, "policy.txt")
	if err := os.WriteFile(copied, text, 0o644); err != nil {
		t.Fatal(err)
	}
	realPolicy := filepath.Join(dir, "real-policy.txt")
	if err := os.WriteFile(realPolicy, []byte(releaselogtest.New(t, "example.org/coffer/releases", 3).Policy(2).String()), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(args ...string) (string, error) {
		c := exec.Command("make", append([]string{"-n", "--no-print-directory", "-f", "firmware/firmware.mk", "TAMAGO=/nonexistent/tamago-go", "FW_VERSION=test"}, args...)...)
		c.Dir = "../.."
		c.Env = []string{"MAKEFLAGS="}
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "BOOT_POLICY" && k != "DEV" && !strings.HasPrefix(k, "MAKE") && k != "MFLAGS" {
				c.Env = append(c.Env, kv)
			}
		}
		out, err := c.CombinedOutput()
		return string(out), err
	}
	for _, args := range [][]string{
		{"firmware", "BOARD=usbarmory"},
		{"firmware", "BOARD=usbarmory", "BOOT_POLICY=" + copied},
		{"fw-bootloader", "BOARD=usbarmory", "DEV=0"},
	} {
		out, err := mk(args...)
		if err == nil || !strings.Contains(out, "TEST policy") || !strings.Contains(out, "DEV=1") {
			t.Errorf("make %v: %v, want a refusal naming the TEST policy and DEV=1\n%s", args, err, out)
		}
	}
	for _, args := range [][]string{
		{"firmware", "BOARD=usbarmory", "DEV=1"},
		{"firmware", "BOARD=usbarmory", "BOOT_POLICY=" + realPolicy},
		{"firmware", "BOARD=qemu"},
	} {
		if out, err := mk(args...); err != nil || !strings.Contains(out, "coffer-boot.elf") {
			t.Errorf("make %v: %v\n%s", args, err, out)
		}
	}
}
