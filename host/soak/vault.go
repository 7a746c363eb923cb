package soak

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
)

// vaultRunner runs the software vault on a unix socket: as its own process
// (softvault dev, then softvault serve on the same state folder after a
// kill), or in this process (softvault.Serve, stopped by cancelling it).
type vaultRunner struct {
	binary, dir, sock string
	flush             time.Duration
	maxLimit          uint

	// process
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	// in-process
	cancel context.CancelFunc
	served chan error
}

// start starts the vault (creating and self-provisioning it the first
// time), waits until its socket answers, and returns the provisioning
// public key clients pin.
func (v *vaultRunner) start(first bool) (ed25519.PublicKey, error) {
	if v.binary == "" {
		return v.startInProcess(first)
	}
	verb := "serve"
	if first {
		verb = "dev"
	}
	args := []string{verb, "-state", v.dir, "-listen", "unix:" + v.sock, "-flush-latency", v.flush.String()}
	if first {
		args = append(args, "-max-limit", strconv.Itoa(int(v.maxLimit)))
	}
	v.cmd = exec.Command(v.binary, args...)
	v.out = syncbuf.Buffer{}
	v.cmd.Stdout, v.cmd.Stderr = &v.out, &v.out
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	v.done = make(chan struct{})
	go func() { v.cmd.Wait(); close(v.done) }()
	if err := v.waitReady(); err != nil {
		v.kill()
		return nil, fmt.Errorf("softvault %s: %w\n%s", verb, err, v.out.String())
	}
	key, err := provision.ReadKey(filepath.Join(v.dir, softvault.DevProvisioningKeyFile))
	if err != nil {
		return nil, err
	}
	return key.Public().(ed25519.PublicKey), nil
}

func (v *vaultRunner) startInProcess(first bool) (ed25519.PublicKey, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var pub ed25519.PublicKey
	if first {
		var err error
		if pub, err = softvault.DevSetup(ctx, v.dir, v.maxLimit, io.Discard); err != nil {
			cancel()
			return nil, err
		}
	}
	v.cancel, v.served = cancel, make(chan error, 1)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		v.served <- softvault.Serve(ctx, v.dir, "unix:"+v.sock, softvault.Options{FlushLatency: v.flush, Log: quiet}, io.Discard)
	}()
	if err := v.waitReady(); err != nil {
		v.kill()
		return nil, err
	}
	if pub == nil {
		key, err := provision.ReadKey(filepath.Join(v.dir, softvault.DevProvisioningKeyFile))
		if err != nil {
			return nil, err
		}
		pub = key.Public().(ed25519.PublicKey)
	}
	return pub, nil
}

// waitReady waits until the socket accepts a connection and answers.
func (v *vaultRunner) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-v.done:
			return errors.New("exited")
		case err := <-v.served:
			return fmt.Errorf("stopped: %v", err)
		default:
		}
		if c, err := net.Dial("unix", v.sock); err == nil {
			sc := protocol.NewStreamClient(c)
			req, _ := protocol.Encode(protocol.TypeStatus, protocol.NewStatusRequest())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = sc.RoundTrip(ctx, req)
			cancel()
			sc.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("its socket did not answer within 60 s")
}

// kill ends the vault at once: SIGKILL for a process (everything it
// acknowledged must already be durable), cancellation for the in-process
// vault.
func (v *vaultRunner) kill() {
	if v.cmd != nil {
		v.cmd.Process.Signal(syscall.SIGKILL)
		<-v.done
		v.cmd = nil
	}
	if v.cancel != nil {
		v.cancel()
		<-v.served
		v.cancel = nil
	}
}

// procSample is what the system says about the vault process.
type procSample struct {
	rss, peak int64         // bytes: VmRSS, VmHWM
	cpu       time.Duration // user + system
}

func (v *vaultRunner) pid() int {
	if v.cmd == nil || v.cmd.Process == nil {
		return 0
	}
	return v.cmd.Process.Pid
}
