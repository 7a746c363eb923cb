package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// The files whose SHA-256 the rebuild command reports in SHA256SUMS, and
// which logged hash each is compared with.
const (
	sumFirmware  = "coffer-os.elf"   // Release.Firmware (boards usbarmory, qemu)
	sumSoftvault = "softvault"       // Release.Firmware (board software)
	sumApplet    = "applet.elf"      // Release.Applet (boards usbarmory, qemu)
	sumBootImage = "coffer-boot.imx" // Release.BootImage, when the release logs one
)

// maxSumsFile bounds the SHA256SUMS the rebuild command writes.
const maxSumsFile = 64 << 10

// errNotRebuilt: the rebuild did not run to the end; the release stays
// pending.
var errNotRebuilt = errors.New("not rebuilt")

// exitCommitUnknown is the rebuild command's exit status for "COMMIT does
// not resolve in the repository" (scripts/rebuild-release.sh); any other
// failure is a rebuild that could not run.
const exitCommitUnknown = 10

// errCommitUnknown: the rebuild command says the release's commit does not
// resolve. Nobody can rebuild such a release: a finding, retried in case
// the repository catches up.
var errCommitUnknown = errors.New("the commit does not resolve in the source repository")

// fullCommit reports whether s is a full git object name, as a release
// must log its commit: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
// An abbreviation may name another commit tomorrow, and anything else
// names none.
func fullCommit(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseSums reads sha256sum's output: "HEX  NAME" or "HEX *NAME" lines.
func parseSums(b []byte) (map[string][]byte, error) {
	if len(b) > maxSumsFile {
		return nil, fmt.Errorf("SHA256SUMS of %d bytes", len(b))
	}
	sums := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		hexSum, name, ok := strings.Cut(line, " ")
		name = strings.TrimPrefix(strings.TrimPrefix(name, " "), "*")
		sum, err := hex.DecodeString(hexSum)
		if !ok || err != nil || len(sum) != 32 || name == "" {
			return nil, fmt.Errorf("SHA256SUMS line %d is not HEX  NAME", n)
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("SHA256SUMS names %s twice", name)
		}
		sums[name] = sum
	}
	return sums, sc.Err()
}

// comparison is one logged hash and the rebuilt one (nil: the rebuild did
// not report that image).
type comparison struct {
	part            string // firmware, applet, boot image
	file            string
	logged, rebuilt []byte
}

// expected lists what a release's rebuild must reproduce.
func expected(r *releaselog.Release) []comparison {
	var cs []comparison
	if r.Board == "software" {
		// A software release is one binary: its Applet hash is not an
		// image the software build makes.
		cs = append(cs, comparison{part: "firmware", file: sumSoftvault, logged: r.Firmware})
	} else {
		cs = append(cs, comparison{part: "firmware", file: sumFirmware, logged: r.Firmware},
			comparison{part: "applet", file: sumApplet, logged: r.Applet})
	}
	if len(r.BootImage) > 0 {
		cs = append(cs, comparison{part: "boot image", file: sumBootImage, logged: r.BootImage})
	}
	return cs
}

// rebuild runs cmd COMMIT BOARD OUTDIR in a fresh OUTDIR and returns every
// image the release logs with what the rebuild reported for it (rebuilt
// nil where it reported nothing). The command's output goes to log. An
// error: errNotRebuilt (no verdict yet) or errCommitUnknown.
func rebuild(ctx context.Context, cmd []string, r *releaselog.Release, log *bytes.Buffer) ([]comparison, error) {
	out, err := os.MkdirTemp("", "coffer-monitor-rebuild-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	c := exec.CommandContext(ctx, cmd[0], append(cmd[1:], r.Commit, r.Board, out)...)
	c.Stdout, c.Stderr = log, log
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == exitCommitUnknown {
			return nil, fmt.Errorf("%w (%s exited %d)", errCommitUnknown, strings.Join(cmd, " "), exitCommitUnknown)
		}
		return nil, fmt.Errorf("%w: %s: %v", errNotRebuilt, strings.Join(cmd, " "), err)
	}
	b, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		return nil, fmt.Errorf("%w: the rebuild wrote no SHA256SUMS: %v", errNotRebuilt, err)
	}
	sums, err := parseSums(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotRebuilt, err)
	}
	cs := expected(r)
	for i := range cs {
		cs[i].rebuilt = sums[cs[i].file]
	}
	return cs, nil
}
