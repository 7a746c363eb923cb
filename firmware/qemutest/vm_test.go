package qemutest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/protocol"
)

const bootTimeout = 2 * time.Minute

// devProvisioningKey is the public half of the QEMU board's development
// provisioning key, which the emulated vault signs its identity with.
var devProvisioningKey = ed25519.NewKeyFromSeed(qemu.DevProvisioningSeed[:]).Public().(ed25519.PublicKey)

func firmwareImage(t *testing.T) string {
	t.Helper()
	img := os.Getenv("COFFER_FIRMWARE")
	if img == "" {
		t.Skip("SKIPPED: QEMU firmware tests run through `make test-firmware` (or set COFFER_FIRMWARE to a QEMU coffer-os.elf)")
	}
	abs, err := filepath.Abs(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Skipf("SKIPPED: no QEMU firmware image at %s (`make test-firmware` builds one with the TamaGo toolchain)", abs)
	}
	return abs
}

func qemuBinary(t *testing.T) string {
	t.Helper()
	q := os.Getenv("COFFER_QEMU")
	if q == "" {
		q = "qemu-system-arm"
	}
	p, err := exec.LookPath(q)
	if err != nil {
		t.Skipf("SKIPPED: %s not found (apt-get install qemu-system-arm)", q)
	}
	return p
}

// vm is one QEMU run of the firmware on the store and anchor files in dir.
type vm struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	sock    string
	client  *protocol.StreamClient
	booted  time.Duration // process start to the ready line
	status  string        // the applet's ready line
	mu      sync.Mutex
	console []string
	ready   chan string
	exited  chan struct{}
}

// boot starts QEMU on the OS image in dir and waits until the vault reports
// ready.
func boot(t *testing.T, dir string) *vm {
	t.Helper()
	return bootKernel(t, dir, firmwareImage(t))
}

// bootKernel starts QEMU on the ELF image kernel (the OS, or the
// bootloader) in dir and waits until the vault reports ready.
func bootKernel(t *testing.T, dir, kernel string) *vm {
	t.Helper()
	v, start := startKernel(t, dir, kernel)
	select {
	case v.status = <-v.ready:
		v.booted = time.Since(start)
	case <-v.exited:
		t.Fatalf("QEMU exited before ready:\n%s", v.Console())
	case <-time.After(bootTimeout):
		t.Fatalf("no ready line after %v:\n%s", bootTimeout, v.Console())
	}
	t.Logf("booted to ready in %v: %s", v.booted.Round(time.Millisecond), v.status)
	v.client = protocol.NewStreamClient(v.dial())
	return v
}

// startKernel starts QEMU on kernel in dir and returns at once, with the
// time it started.
func startKernel(t *testing.T, dir, kernel string) (*vm, time.Time) {
	t.Helper()
	q := qemuBinary(t)
	img := kernel
	sock := filepath.Join(dir, "protocol.sock")
	os.Remove(sock)
	v := &vm{t: t, dir: dir, ready: make(chan string, 1), exited: make(chan struct{})}
	v.cmd = exec.Command(q,
		"-machine", "mcimx6ul-evk", "-cpu", "cortex-a7", "-m", "512M",
		"-nographic", "-monitor", "none", "-net", "none",
		"-serial", "unix:"+sock+",server,nowait", "-serial", "stdio",
		"-semihosting", "-semihosting-config", "enable=on,userspace=off",
		"-kernel", img)
	v.cmd.Dir = dir
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	start := time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.kill)
	go v.readConsole(out)
	v.sock = sock
	return v, start
}

// dial connects to the protocol UART. QEMU's socket serves one connection
// at a time and takes a new one after the last closed.
func (v *vm) dial() net.Conn {
	v.t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var c net.Conn
		if c, err = net.Dial("unix", v.sock); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.t.Fatal(err)
	return nil
}

func (v *vm) readConsole(r io.Reader) {
	defer close(v.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		v.mu.Lock()
		v.console = append(v.console, line)
		v.mu.Unlock()
		if i := strings.Index(line, "coffer: ready: "); i >= 0 {
			select {
			case v.ready <- line[i+len("coffer: ready: "):]:
			default:
			}
		}
	}
}

// Console returns everything QEMU printed so far.
func (v *vm) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.console, "\n")
}

// kill ends QEMU as a power cut would end the device (QEMU's writes to the
// image files are already in the host's page cache).
func (v *vm) kill() {
	if v.client != nil {
		v.client.Close()
		v.client = nil
	}
	if v.cmd.Process != nil && v.cmd.ProcessState == nil {
		v.cmd.Process.Kill()
		v.cmd.Wait()
	}
	if v.t.Failed() {
		v.t.Logf("console:\n%s", v.Console())
	}
}

func (v *vm) rt(ctx context.Context, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return v.client.RoundTrip(ctx, req)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
