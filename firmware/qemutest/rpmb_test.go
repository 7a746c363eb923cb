package qemutest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
	"github.com/cofferhsm/coffer/protocol"
)

// The first boot blows the (fake) fuse and programs the emulated RPMB. Then
// the RPMB partition is swapped for a blank one, which answers "key not
// programmed": the firmware refuses service with a tampered error, never
// programs the blank partition, never touches the store; with the real
// partition back, everything is there.
func TestBlankRPMBRefusedNeverProgrammed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := boot(t, dir)
	if c := v.Console(); !strings.Contains(c, "RPMB: provisioning") || !strings.Contains(c, "key programmed") {
		t.Fatalf("the first boot did not provision the RPMB:\n%s", c)
	}
	if b, err := os.ReadFile(filepath.Join(dir, qemu.FuseFile)); err != nil || len(b) == 0 {
		t.Fatalf("fake fuse after provisioning: %q, %v", b, err)
	}
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("dave")}
	key := bytes.Repeat([]byte{4}, 32)
	if _, err := c.Register(ctx, []byte("pw"), key, 5); err != nil {
		t.Fatal(err)
	}
	v.kill()

	anchor := filepath.Join(dir, qemu.AnchorFile)
	if err := os.Rename(anchor, anchor+".real"); err != nil {
		t.Fatal(err)
	}
	storeImg := filepath.Join(dir, qemu.StoreFile)
	before, err := os.ReadFile(storeImg)
	if err != nil {
		t.Fatal(err)
	}
	v = boot(t, dir)
	if !strings.Contains(v.status, "REFUSING") {
		t.Errorf("ready line with a blank RPMB: %q", v.status)
	}
	if con := v.Console(); !strings.Contains(con, "never programming it again") || strings.Contains(con, "RPMB: provisioning") {
		t.Errorf("console with a blank RPMB:\n%s", con)
	}
	for range 2 {
		_, err = testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
		if !errors.Is(err, &protocol.Error{Code: protocol.CodeTampered}) {
			t.Fatalf("with a blank RPMB: %v, want a tampered error", err)
		}
	}
	v.kill()
	f, err := os.OpenFile(anchor, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err := qemu.OpenEmulatedRPMB(emulate.OSFile{File: f})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = storage.NewRPMBAnchor(e, [32]byte{}, 0).Read()
	f.Close()
	var re *storage.RPMBError
	if !errors.As(err, &re) || re.Result != storage.RPMBKeyNotProgrammed {
		t.Fatalf("the blank partition after the boot: %v, want still without a key", err)
	}
	if after, err := os.ReadFile(storeImg); err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the store changed under a blank RPMB (%v)", err)
	}

	if err := os.Rename(anchor+".real", anchor); err != nil {
		t.Fatal(err)
	}
	v = boot(t, dir)
	if !strings.Contains(v.status, "serving") || strings.Contains(v.status, "new store") {
		t.Fatalf("with the real RPMB back: %q", v.status)
	}
	c.RoundTrip = v.rt
	s, _, err := c.Login(ctx, []byte("pw"))
	if err != nil || !bytes.Equal(s.BackupKey, key) {
		t.Fatalf("login with the real RPMB back: %v", err)
	}
}
