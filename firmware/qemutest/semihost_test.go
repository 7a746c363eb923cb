package qemutest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/ta/crashtest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/protocol"
)

// QEMU serves semihosting to the OS only (-semihosting-config
// enable=on,userspace=off): the applet, in user mode, must not reach the
// host. A test applet asks the host to create and write a file in the test's
// folder, with the SVC trap (svc 0x123456) and with the HLT trap (hlt
// 0xf000). Each time the file must not appear, the OS must stop the applet
// (answering its request "unavailable") and start it again, and the vault
// must keep serving with its committed state.
func TestAppletSemihostingRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := boot(t, dir)
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	erin := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("erin")}
	key := bytes.Repeat([]byte{5}, 32)
	if _, err := erin.Register(ctx, []byte("pw"), key, 5); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		prefix  string
		console string // what the OS says when it stops the applet
	}{
		{"svc", crashtest.SemihostSVCPrefix, "refused supervisor call svc #0x123456 (semihosting"},
		{"hlt", crashtest.SemihostHLTPrefix, "UNDEFINED exception"},
	} {
		target := filepath.Join(dir, "written-by-the-applet-"+c.name)
		sent := time.Now()
		reply, err := v.rt(ctx, []byte(c.prefix+target))
		if err != nil {
			t.Fatal(err)
		}
		perr := protocol.Decode(reply, protocol.TypeStatus, &protocol.Empty{})
		if errors.Is(perr, &protocol.Error{Code: protocol.CodeMalformed}) {
			t.Skip("SKIPPED: the firmware image was built without the coffer_crashtest tag")
		}
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			b, _ := os.ReadFile(target)
			t.Fatalf("%s: the applet reached the host through semihosting: %s exists (%v), holding %q", c.name, target, err, b)
		}
		if !errors.Is(perr, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) {
			t.Fatalf("%s: the OS did not stop the applet's semihosting calls: %v", c.name, perr)
		}
		select {
		case <-v.ready:
			t.Logf("%s: applet restarted and ready %v after the request", c.name, time.Since(sent).Round(time.Millisecond))
		case <-time.After(time.Minute):
			t.Fatalf("%s: no restart:\n%s", c.name, v.Console())
		}
		if !strings.Contains(v.Console(), c.console) {
			t.Errorf("%s: the console does not say %q:\n%s", c.name, c.console, v.Console())
		}
		// Nothing else appeared next to the store either.
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		if want := []string{qemu.AnchorFile, qemu.FuseFile, qemu.StoreFile, "protocol.sock"}; !slices.Equal(names, want) {
			t.Errorf("%s: files in QEMU's folder: %q, want %q", c.name, names, want)
		}
		s, r, err := erin.Login(ctx, []byte("pw"))
		if err != nil {
			t.Fatalf("%s: login after the restart: %v", c.name, err)
		}
		if !bytes.Equal(s.BackupKey, key) || r.FailedSinceSuccess != 0 {
			t.Fatalf("%s: after the restart: receipt %+v", c.name, r)
		}
		if err := s.Confirm(ctx); err != nil { // a login counts as a success once confirmed
			t.Fatalf("%s: confirming the login: %v", c.name, err)
		}
	}
}
