package qemutest

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/ta/crashtest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// The applet panics; the OS answers the request it had taken, restarts it,
// and the committed state is still there.
func TestAppletCrashRestart(t *testing.T) {
	ctx := context.Background()
	v := boot(t, t.TempDir())
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	dave := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("dave")}
	key := bytes.Repeat([]byte{9}, 32)
	if _, err := dave.Register(ctx, []byte("pw"), key, 4); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dave.Login(ctx, []byte("bad")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatal(err)
	}

	reply, err := v.rt(ctx, []byte(crashtest.CrashRequest))
	if err != nil {
		t.Fatal(err)
	}
	perr := protocol.Decode(reply, protocol.TypeStatus, &protocol.Empty{})
	if errors.Is(perr, &protocol.Error{Code: protocol.CodeMalformed}) {
		t.Skip("SKIPPED: the firmware image was built without the coffer_crashtest tag (make test-firmware builds one)")
	}
	if !errors.Is(perr, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) {
		t.Fatalf("reply to the request the applet died on: %v", perr)
	}
	crashed := time.Now()
	select {
	case status := <-v.ready:
		t.Logf("applet restarted and ready %v after the crash: %s", time.Since(crashed).Round(time.Millisecond), status)
	case <-time.After(time.Minute):
		t.Fatalf("no ready line after the crash:\n%s", v.Console())
	}
	if c := v.Console(); !strings.Contains(c, "exited with code") && !strings.Contains(c, "CRASHED") {
		t.Errorf("the console does not report the crash")
	}
	if !strings.Contains(v.Console(), "panic: "+crashtest.CrashPanic) {
		t.Errorf("the applet's panic message did not reach the console")
	}
	s, r, err := dave.Login(ctx, []byte("pw"))
	if err != nil {
		t.Fatalf("login after the restart: %v", err)
	}
	if !bytes.Equal(s.BackupKey, key) || r.FailedSinceSuccess != 1 {
		t.Fatalf("after the restart: receipt %+v", r)
	}
}

// Latency of registration and login inside QEMU (emulated Cortex-A7, TCG),
// through the UART, for the record; nothing is asserted but success.
func TestLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("latency measurement skipped in -short mode")
	}
	ctx := context.Background()
	v := boot(t, t.TempDir())
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	var reg, login, wrong []time.Duration
	key := bytes.Repeat([]byte{3}, 32)
	for i := 0; i < n; i++ {
		c := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte{'u', byte('0' + i)}}
		start := time.Now()
		if _, err := c.Register(ctx, []byte("pw"), key, 10); err != nil {
			t.Fatal(err)
		}
		reg = append(reg, time.Since(start))
		start = time.Now()
		if _, _, err := c.Login(ctx, []byte("pw")); err != nil {
			t.Fatal(err)
		}
		login = append(login, time.Since(start))
		start = time.Now()
		if _, _, err := c.Login(ctx, []byte("no")); !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatal(err)
		}
		wrong = append(wrong, time.Since(start))
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"register", reg}, {"login (right password, key released)", login}, {"login (wrong password, counted)", wrong}} {
		sort.Slice(m.d, func(i, j int) bool { return m.d[i] < m.d[j] })
		t.Logf("%s: min %s, median %s, max %s over %d", m.name, ms(m.d[0]), ms(m.d[len(m.d)/2]), ms(m.d[len(m.d)-1]), len(m.d))
	}
}

// A hung applet cannot stop the OS: time slices give the OS the CPU back,
// its watchdog restarts the applet, and a request queued meanwhile is served
// by the new applet.
func TestAppletHangWatchdog(t *testing.T) {
	ctx := context.Background()
	v := boot(t, t.TempDir())
	if _, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey); err != nil {
		t.Fatal(err)
	}
	hung := make(chan error, 1)
	go func() {
		reply, err := v.rt(ctx, []byte(crashtest.HangRequest))
		if err == nil {
			err = protocol.Decode(reply, protocol.TypeStatus, &protocol.Empty{})
		}
		hung <- err
	}()
	time.Sleep(500 * time.Millisecond) // let the applet take it
	start := time.Now()
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		if errors.Is(err, &protocol.Error{Code: protocol.CodeMalformed}) {
			t.Skip("SKIPPED: the firmware image was built without the coffer_crashtest tag")
		}
		t.Fatalf("request queued behind a hung applet: %v", err)
	}
	t.Logf("a request queued behind the hung applet was answered after %v (watchdog, restart)", time.Since(start).Round(time.Millisecond))
	if !id.Insecure {
		t.Fatal("identity")
	}
	err = <-hung
	if errors.Is(err, &protocol.Error{Code: protocol.CodeMalformed}) {
		t.Skip("SKIPPED: the firmware image was built without the coffer_crashtest tag")
	}
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) {
		t.Fatalf("reply to the request the applet hung on: %v", err)
	}
	if !strings.Contains(v.Console(), "applet hung") {
		t.Error("the console does not report the hang")
	}
}

// The applet runs in user mode with only its own region mapped for it: a
// read of the OS's memory faults, and the OS restarts it.
func TestAppletCannotReadOSMemory(t *testing.T) {
	ctx := context.Background()
	v := boot(t, t.TempDir())
	reply, err := v.rt(ctx, []byte(crashtest.PeekRequest))
	if err != nil {
		t.Fatal(err)
	}
	perr := protocol.Decode(reply, protocol.TypeStatus, &protocol.Empty{})
	if errors.Is(perr, &protocol.Error{Code: protocol.CodeMalformed}) {
		t.Skip("SKIPPED: the firmware image was built without the coffer_crashtest tag")
	}
	if !errors.Is(perr, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) {
		t.Fatalf("the applet read the OS's memory: %v", perr)
	}
	select {
	case <-v.ready:
	case <-time.After(time.Minute):
		t.Fatal("no restart")
	}
	if c := v.Console(); !strings.Contains(c, "DATA_ABORT") {
		t.Errorf("the console does not show the data abort:\n%s", c)
	}
}
