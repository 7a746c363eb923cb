package soak

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
)

// TestSoakNoticesALostCommit plays the failure the restart check is there
// for: the vault comes back without commits it acknowledged. The state
// folder is copied after the timed run and put back while the vault is
// down for its restart, so every commit of the final checks is lost (the
// software vault cannot tell: its anchor is a file, rolled back with the
// store). Each account's login after the restart must then disagree with
// the model, and the store sequence must be seen going backwards; without
// the rollback the same soak passes (TestSoakSmoke).
func TestSoakNoticesALostCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("a short soak")
	}
	snapshot := t.TempDir()
	files := []string{softvault.StoreFile, "anchor.rpmb"}
	cfg := Config{
		Duration: 500 * time.Millisecond, Clients: 4, ProductClients: -1, LockoutAccounts: -1, LoginRate: -1,
		Stretch: Stretch{Passes: 1, MemoryKiB: 64, Lanes: 1},
		afterRun: func(dir string) error {
			for _, f := range files {
				if err := copySparse(filepath.Join(dir, f), filepath.Join(snapshot, f)); err != nil {
					return err
				}
			}
			return nil
		},
		beforeRestart: func(dir string) error {
			for _, f := range files {
				if err := copySparse(filepath.Join(snapshot, f), filepath.Join(dir, f)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cfg.StateDir = filepath.Join(t.TempDir(), "vault")
	sockDir, err := os.MkdirTemp("", "soak")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	cfg.SocketDir = sockDir
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	classes := strings.Join(rep.FailureClasses, "\n")
	for _, want := range []string{"restart total-mismatch", "restart store-sequence-backwards"} {
		if !strings.Contains(classes, want) {
			t.Errorf("no %q failure after losing the final checks' commits:\n%s", want, rep)
		}
	}
	if strings.Contains(classes, "run ") || strings.Contains(classes, "final ") {
		t.Errorf("failures before the rollback:\n%s", rep)
	}
	if rep.AccountsMatched != 0 {
		t.Errorf("%d accounts matched after losing their last commits", rep.AccountsMatched)
	}
}

// copySparse copies a file, leaving holes where the source reads zeros
// (the store file is a sparse 256 MiB).
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf, zeros := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !bytes.Equal(buf[:n], zeros[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				out.Close()
				return werr
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(off); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
