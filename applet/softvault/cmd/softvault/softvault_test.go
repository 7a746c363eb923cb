package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
)

// server runs `softvault ARGS` in this process until stopped.
type server struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	socket string
	out    *syncbuf.Buffer
}

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{t: t, cancel: cancel, done: make(chan error, 1), out: &syncbuf.Buffer{}}
	for i, a := range args {
		if a == "-listen" {
			s.socket = strings.TrimPrefix(args[i+1], "unix:")
		}
	}
	go func() { s.done <- run(ctx, args, io.Discard, s.out) }()
	if err := softvaulttest.WaitForSocket(s.socket, s.done, 20*time.Second); err != nil {
		t.Fatalf("server did not start: %v\n%s", err, s.out)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		s.t.Errorf("server: %v", err)
	}
}

func (s *server) dial(t *testing.T) *protocol.StreamClient {
	t.Helper()
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	sc := protocol.NewStreamClient(c)
	t.Cleanup(func() { sc.Close() })
	return sc
}

func provisioningPublicKey(t *testing.T, dir string) ed25519.PublicKey {
	t.Helper()
	k, err := provision.ReadKey(filepath.Join(dir, softvault.DevProvisioningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().(ed25519.PublicKey)
}

func TestSoftwareVaultServesRegisterLoginLockoutAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	args := []string{"dev", "-state", dir, "-listen", "unix:" + filepath.Join(dir, "v.sock")}
	srv := startServer(t, args...)
	if !strings.Contains(srv.out.String(), "INSECURE") {
		t.Fatal("the software vault did not say it is insecure")
	}
	conn := srv.dial(t)
	ctx := context.Background()
	id, err := testclient.FetchIdentity(ctx, conn.RoundTrip, provisioningPublicKey(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Insecure {
		t.Fatal("software vault identity is not flagged insecure")
	}
	alice := &testclient.Client{RoundTrip: conn.RoundTrip, Identity: id, UserID: []byte("alice")}
	bob := &testclient.Client{RoundTrip: conn.RoundTrip, Identity: id, UserID: []byte("bob")}
	key := bytes.Repeat([]byte{7}, 32)
	if _, err := alice.Register(ctx, []byte("pw-a"), key, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Register(ctx, []byte("pw-b"), key, 3); err != nil {
		t.Fatal(err)
	}
	s, _, err := alice.Login(ctx, []byte("pw-a"))
	if err != nil || !bytes.Equal(s.BackupKey, key) {
		t.Fatalf("login: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, _, err := bob.Login(ctx, []byte("wrong")); !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatal(err)
		}
	}
	// Restart from the same files: bob stays locked, alice recovers.
	srv.stop()
	srv = startServer(t, append([]string{"serve"}, args[1:]...)...)
	conn = srv.dial(t)
	alice.RoundTrip, bob.RoundTrip = conn.RoundTrip, conn.RoundTrip
	if _, r, err := bob.Login(ctx, []byte("pw-b")); !errors.Is(err, testclient.ErrWrongPassword) || r.Kind != protocol.ReceiptLocked {
		t.Fatalf("locked user after restart: %v %+v", err, r)
	}
	s, _, err = alice.Login(ctx, []byte("pw-a"))
	if err != nil || !bytes.Equal(s.BackupKey, key) {
		t.Fatalf("login after restart: %v", err)
	}
	if s.Released.StoreSequence == 0 {
		t.Fatal("receipt without a store sequence")
	}
}

func TestSoftwareVaultAnswersGarbageAndKeepsServing(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, "dev", "-state", dir, "-listen", "unix:"+filepath.Join(dir, "v.sock"))
	c, err := net.Dial("unix", srv.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n\x00\xffCF\x01\x00garbage"))
	// A frame whose header announces more than MaxPayload: refused from
	// the header alone, then a good request.
	c.Write(oversizedFrameHeader(5))
	req, _ := protocol.Encode(protocol.TypeStatus, protocol.NewStatusRequest())
	protocol.WriteFrame(c, protocol.Frame{ID: 9, Payload: req})
	r := protocol.NewFrameReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var badFrames int
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("after %d bad-frame replies: %v", badFrames, err)
		}
		if f.ID == 9 {
			if err := protocol.Decode(f.Payload, protocol.TypeStatus, &protocol.StatusReply{}); err != nil {
				t.Fatalf("status after garbage: %v", err)
			}
			break
		}
		var pe *protocol.Error
		if err := protocol.Decode(f.Payload, protocol.TypeStatus, &protocol.Empty{}); !errors.As(err, &pe) || pe.Code != protocol.CodeBadFrame {
			t.Fatalf("reply to garbage: %v", err)
		}
		badFrames++
	}
	if badFrames == 0 {
		t.Fatal("garbage got no error reply")
	}
}

func TestSoftwareVaultRefusesARolledBackStore(t *testing.T) {
	dir := t.TempDir()
	args := []string{"dev", "-state", dir, "-listen", "unix:" + filepath.Join(dir, "v.sock")}
	srv := startServer(t, args...)
	conn := srv.dial(t)
	ctx := context.Background()
	id, err := testclient.FetchIdentity(ctx, conn.RoundTrip, provisioningPublicKey(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	carol := &testclient.Client{RoundTrip: conn.RoundTrip, Identity: id, UserID: []byte("carol")}
	if _, err := carol.Register(ctx, []byte("pw"), bytes.Repeat([]byte{1}, 32), 5); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	old, err := os.ReadFile(filepath.Join(dir, softvault.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, append([]string{"serve"}, args[1:]...)...)
	conn = srv.dial(t)
	carol.RoundTrip = conn.RoundTrip
	for i := 0; i < 2; i++ {
		carol.Login(ctx, []byte("wrong"))
	}
	srv.stop()
	// The operator restores the store from before the two wrong guesses,
	// keeping the anchor: the vault must refuse, not forget the guesses.
	if err := os.WriteFile(filepath.Join(dir, softvault.StoreFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = run(ctx2, append([]string{"serve"}, args[1:]...), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("serving a rolled-back store: %v", err)
	}
}

// The commands the provisioning station needs from a software vault: its
// unsigned identity out, a signed bundle in (signed here as coffer-provision
// signs it; its own tests drive the whole path).
func TestIdentityAndInstallCommands(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ctx := context.Background()
	must := func(args ...string) {
		t.Helper()
		if err := run(ctx, args, io.Discard, io.Discard); err != nil {
			t.Fatalf("softvault %v: %v", args, err)
		}
	}
	must("init", "-state", state)
	if err := run(ctx, []string{"init", "-state", state}, io.Discard, io.Discard); err == nil {
		t.Fatal("init over an existing vault succeeded")
	}
	must("identity", "-state", state, "-o", filepath.Join(dir, "id.cbor"))
	pub, err := provision.NewKey(filepath.Join(dir, "prov.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := provision.ReadKey(filepath.Join(dir, "prov.key"))
	b, err := os.ReadFile(filepath.Join(dir, "id.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	var id protocol.Identity
	if err := protocol.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	signed, err := protocol.SignIdentity(key, &id)
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.WriteCBOR(filepath.Join(dir, "bundle.cbor"), &signed); err != nil {
		t.Fatal(err)
	}
	must("install", "-state", state, "-bundle", filepath.Join(dir, "bundle.cbor"))
	srv := startServer(t, "serve", "-state", state, "-listen", "unix:"+filepath.Join(dir, "v.sock"))
	if _, err := testclient.FetchIdentity(ctx, srv.dial(t).RoundTrip, pub); err != nil {
		t.Fatalf("identity after install: %v", err)
	}
}

// oversizedFrameHeader is a well-formed frame header (FRAMING.md) that
// announces one byte more than MaxPayload.
func oversizedFrameHeader(id uint32) []byte {
	h := []byte{'C', 'F', protocol.FrameVersion, 0}
	h = binary.BigEndian.AppendUint32(h, id)
	h = binary.BigEndian.AppendUint32(h, protocol.MaxPayload+1)
	return binary.BigEndian.AppendUint32(h, crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli)))
}
