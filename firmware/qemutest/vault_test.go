package qemutest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/protocol"
)

func TestBootIdentityInsecure(t *testing.T) {
	ctx := context.Background()
	v := boot(t, t.TempDir())
	if !strings.Contains(v.status, "new store") || !strings.Contains(v.status, "INSECURE") {
		t.Errorf("ready line %q", v.status)
	}
	if c := v.Console(); !strings.Contains(c, "INSECURE VAULT") {
		t.Error("the console does not say the vault is insecure")
	}
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Insecure {
		t.Fatal("identity bundle not flagged insecure")
	}
	if id.MaxLimit != protocol.DefaultLimit || !strings.Contains(id.Name, "qemu") {
		t.Errorf("identity %+v", id)
	}
	var st protocol.StatusReply
	challenge := protocol.NewStatusRequest()
	req, _ := protocol.Encode(protocol.TypeStatus, challenge)
	reply, err := v.rt(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.Decode(reply, protocol.TypeStatus, &st); err != nil {
		t.Fatal(err)
	}
	status, err := st.Verify(id.SigningKey, challenge.Nonce)
	if err != nil {
		t.Fatalf("the firmware's status: %v", err)
	}
	// Started without the bootloader, it measures its applet image.
	if !bytes.Equal(status.FirmwareHash, id.FirmwareHash) {
		t.Fatalf("status firmware hash %x, identity's %x", status.FirmwareHash, id.FirmwareHash)
	}
}

// Register, recover, count wrong passwords, lock out; then kill QEMU and
// boot again from the same files: the lock and the counts survive.
func TestRecoverLockoutAcrossReboot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := boot(t, dir)
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{0x42}, 32)
	const limit = 3
	alice := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("alice@example")}
	bob := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("bob@example")}

	start := time.Now()
	if _, err := alice.Register(ctx, []byte("correct horse"), key, limit); err != nil {
		t.Fatal(err)
	}
	t.Logf("register: %s (in QEMU, over the UART)", ms(time.Since(start)))
	if _, err := bob.Register(ctx, []byte("bob's"), key, limit); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	s, r, err := alice.Login(ctx, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("login (KE1→KE2→KE3, key released): %s", ms(time.Since(start)))
	if !bytes.Equal(s.BackupKey, key) || r.TriesLeft != limit-1 {
		t.Fatalf("login: key %x, receipt %+v", s.BackupKey, r)
	}
	if err := s.Confirm(ctx); err != nil { // a login counts as a success once confirmed
		t.Fatal(err)
	}

	for i := 1; i <= limit-1; i++ {
		_, r, err := alice.Login(ctx, []byte("wrong"))
		if !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatalf("wrong password %d: %v", i, err)
		}
		if r.Kind != protocol.ReceiptAttempt || r.TriesLeft != uint(limit-i) || r.FailedSinceSuccess != uint(i-1) {
			t.Fatalf("wrong password %d: receipt %+v", i, r)
		}
	}
	// The last try.
	if _, r, err := alice.Login(ctx, []byte("wrong")); !errors.Is(err, testclient.ErrWrongPassword) || r.TriesLeft != 0 {
		t.Fatalf("final wrong password: %v, receipt %+v", err, r)
	}
	// Locked: even the right password is refused now.
	if _, r, err := alice.Login(ctx, []byte("correct horse")); err == nil {
		t.Fatal("locked record released its key")
	} else if r != nil && r.Kind != protocol.ReceiptLocked {
		t.Fatalf("after lockout: receipt %+v", r)
	}
	// One wrong guess at bob, not yet locked.
	if _, _, err := bob.Login(ctx, []byte("nope")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatal(err)
	}

	v.kill()
	v = boot(t, dir)
	if strings.Contains(v.status, "new store") {
		t.Fatalf("the reboot formatted a new store: %s", v.status)
	}
	id2, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil || !bytes.Equal(id2.SigningKey, id.SigningKey) {
		t.Fatalf("identity after reboot: %v", err)
	}
	alice.RoundTrip, bob.RoundTrip = v.rt, v.rt
	// The user status, which counts nothing, shows the counts the reboot
	// kept, from the firmware's applet.
	if st, _, err := alice.UserStatus(ctx); err != nil || st.TriesLeft != 0 || st.FailedSinceSuccess != limit || st.RevivableMillis != 0 {
		t.Fatalf("alice's user status after reboot: %+v, %v", st, err)
	}
	if st, _, err := bob.UserStatus(ctx); err != nil || st.TriesLeft != limit-1 || st.FailedSinceSuccess != 1 {
		t.Fatalf("bob's user status after reboot: %+v, %v", st, err)
	}
	if _, r, err := alice.Login(ctx, []byte("correct horse")); err == nil {
		t.Fatal("the reboot unlocked alice")
	} else if r != nil && r.Kind != protocol.ReceiptLocked {
		t.Fatalf("alice after reboot: receipt %+v", r)
	}
	s, r, err = bob.Login(ctx, []byte("bob's"))
	if err != nil {
		t.Fatalf("bob after reboot: %v", err)
	}
	if !bytes.Equal(s.BackupKey, key) || r.FailedSinceSuccess != 1 {
		t.Fatalf("bob after reboot: receipt %+v", r)
	}
}

// rawFrame builds a frame by hand (protocol's own encoder refuses oversized
// payloads): magic, version, flags, id, length, header CRC-32C, payload, CRC.
func rawFrame(id, length uint32, payload []byte) []byte {
	tab := crc32.MakeTable(crc32.Castagnoli)
	b := []byte{'C', 'F', protocol.FrameVersion, 0}
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, length)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, tab))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, tab))
}

// Damaged and oversized frames get error replies and the vault keeps serving.
func TestGarbageAndOversizedFrames(t *testing.T) {
	v := boot(t, t.TempDir())
	v.client.Close() // speak raw frames on a new connection
	v.client = nil
	conn := v.dial()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))

	garbage := bytes.Repeat([]byte("this is not a frame "), 20)
	oversized := rawFrame(5, protocol.MaxPayload+1, nil) // header only: rejected before any payload
	corrupt := rawFrame(6, 4, []byte("abcd"))
	corrupt[len(corrupt)-1] ^= 0xff
	notCBOR := rawFrame(8, 3, []byte{0xff, 0xfe, 0xfd})
	req, _ := protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	good := rawFrame(7, uint32(len(req)), req)
	for _, b := range [][]byte{garbage, oversized, corrupt, notCBOR, good} {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	r := protocol.NewFrameReader(conn)
	seen := map[uint32]protocol.Code{}
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("reading replies: %v (so far %v)", err, seen)
		}
		var e protocol.Error
		if derr := protocol.Decode(f.Payload, protocol.TypeIdentity, &protocol.SignedIdentity{}); derr != nil {
			if !errors.As(derr, new(*protocol.Error)) {
				t.Fatalf("reply to frame %d: %v", f.ID, derr)
			}
			var pe *protocol.Error
			errors.As(derr, &pe)
			e = *pe
		}
		seen[f.ID] = e.Code
		if f.ID == 7 {
			break
		}
	}
	if seen[7] != 0 {
		t.Fatalf("the good request after the garbage failed: %v", seen[7])
	}
	if seen[5] != protocol.CodeBadFrame || seen[6] != protocol.CodeBadFrame {
		t.Errorf("oversized or corrupt frame not answered with a bad-frame error: %v", seen)
	}
	if seen[0] != protocol.CodeBadFrame {
		t.Errorf("garbage not answered: %v", seen)
	}
	if seen[8] != protocol.CodeMalformed {
		t.Errorf("a payload that is not CBOR: %v, want malformed", seen[8])
	}
}

// An older copy of the store image under the newer anchor: service refused.
func TestRolledBackStoreRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := boot(t, dir)
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("carol")}
	if _, err := c.Register(ctx, []byte("pw"), bytes.Repeat([]byte{1}, 32), 5); err != nil {
		t.Fatal(err)
	}
	v.kill()
	storeImg := filepath.Join(dir, qemu.StoreFile)
	copyFile(t, storeImg, storeImg+".old")

	v = boot(t, dir)
	c.RoundTrip = v.rt
	if _, _, err := c.Login(ctx, []byte("wrong")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatal(err)
	}
	v.kill()

	copyFile(t, storeImg+".old", storeImg) // anchor kept
	v = boot(t, dir)
	if !strings.Contains(v.status, "REFUSING") {
		t.Errorf("ready line %q", v.status)
	}
	_, err = testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeTampered}) {
		t.Fatalf("rolled-back store: %v, want a tampered error", err)
	}
	c.RoundTrip = v.rt
	if _, _, err := c.Login(ctx, []byte("pw")); !errors.Is(err, &protocol.Error{Code: protocol.CodeTampered}) {
		t.Fatalf("login on a rolled-back store: %v", err)
	}
}
