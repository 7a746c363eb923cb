package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/protocol"
)

// TestMain lets a test run this command as a process of its own: the test
// binary, started with SOFTVAULT_TEST_MAIN=1, is softvault.
func TestMain(m *testing.M) {
	if os.Getenv("SOFTVAULT_TEST_MAIN") == "1" {
		os.Args = append([]string{"softvault"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startProcess runs `softvault ARGS` as another process and waits until it
// accepts connections on socket.
func startProcess(t *testing.T, socket string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SOFTVAULT_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	if err := softvaulttest.WaitForSocket(socket, exited, 30*time.Second); err != nil {
		t.Fatalf("softvault %v did not start: %v", args, err)
	}
	return cmd
}

// Two processes serving one state folder would both run, and each would
// overwrite the other's commits. The second must refuse to start and name
// the process that holds the folder; the first keeps serving.
func TestSecondServerOnOneFolderIsRefused(t *testing.T) {
	dir := t.TempDir()
	first := startProcess(t, filepath.Join(dir, "1.sock"), "dev", "-state", dir, "-listen", "unix:"+filepath.Join(dir, "1.sock"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	err := run(ctx, []string{"serve", "-state", dir, "-listen", "unix:" + filepath.Join(dir, "2.sock")}, io.Discard, &stderr)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a second server on %s ran (%v)", dir, err)
	}
	pid := "pid " + strconv.Itoa(first.Process.Pid)
	if msg := err.Error(); !strings.Contains(msg, pid) || !strings.Contains(msg, "dev -state") {
		t.Fatalf("refusal does not name the holder (%s and its command): %v", pid, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "2.sock")); err == nil {
		t.Fatal("the refused server opened its socket")
	}
	// Nor may the other commands that open the vault run beside it.
	for _, args := range [][]string{
		{"identity", "-state", dir, "-o", filepath.Join(dir, "id.cbor")},
		{"dev", "-state", dir, "-listen", "unix:" + filepath.Join(dir, "3.sock")},
	} {
		if err := run(ctx, args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), pid) {
			t.Errorf("softvault %s beside a running server: %v", args[0], err)
		}
	}

	// The first still serves.
	c, err := net.Dial("unix", filepath.Join(dir, "1.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sc := protocol.NewStreamClient(c)
	defer sc.Close()
	req, _ := protocol.Encode(protocol.TypeStatus, protocol.NewStatusRequest())
	reply, err := sc.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.Decode(reply, protocol.TypeStatus, &protocol.StatusReply{}); err != nil {
		t.Fatalf("first server after the refusals: %v", err)
	}
}
