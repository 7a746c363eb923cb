package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

// loginKeys is what a client holds after a login, none of which the host
// may see: OPAQUE's session and export keys, the session channel keys
// derived from the first, and the backup key unwrapped with the second.
type loginKeys struct {
	handle     []byte
	sessionKey []byte
	exportKey  []byte
	channel    protocol.SessionKeys
	backupKey  []byte
	next       uint64
	confirm    []byte // the release receipt's hash, carried by the first command
}

// manualLogin is vaulttest's login, done here so that the test keeps the
// keys it derives.
func manualLogin(t *testing.T, c *testclient.Client, password []byte) *loginKeys {
	t.Helper()
	login, ke1, err := opaque.NewClientLogin(rand.Reader, password)
	if err != nil {
		t.Fatal(err)
	}
	var start protocol.LoginStartReply
	call(t, c, protocol.TypeLoginStart, &protocol.LoginStart{UserID: c.UserID, KE1: ke1}, &start)
	ke3, sessionKey, exportKey, err := login.Finish(start.KE2, opaque.Identities{Client: c.UserID}, []byte(protocol.OPAQUEContext), c.Stretch)
	if err != nil {
		t.Fatal(err)
	}
	var done protocol.SealedReply
	call(t, c, protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: ke3}, &done)
	keys, err := protocol.DeriveSessionKeys(sessionKey, start.Handle)
	if err != nil {
		t.Fatal(err)
	}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&keys.ToClient, 0, start.Handle, done.Sealed, &inner); err != nil {
		t.Fatal(err)
	}
	k, err := protocol.UnwrapKey(exportKey, c.UserID, inner.WrappedKey)
	if err != nil {
		t.Fatal(err)
	}
	return &loginKeys{handle: start.Handle, sessionKey: sessionKey, exportKey: exportKey, channel: keys, backupKey: k, next: 1,
		confirm: protocol.ReceiptHash(inner.Receipt)}
}

func (l *loginKeys) command(t *testing.T, c *testclient.Client, cmd *protocol.SessionCommand) *protocol.SessionReplyInner {
	t.Helper()
	if l.next == 1 {
		confirmed := *cmd
		confirmed.Confirm, cmd = l.confirm, &confirmed
	}
	sealed, err := protocol.SealMessage(&l.channel.ToVault, l.next, l.handle, cmd)
	if err != nil {
		t.Fatal(err)
	}
	var reply protocol.SessionReply
	call(t, c, protocol.TypeSession, &protocol.Session{Handle: l.handle, Seq: l.next, Sealed: sealed}, &reply)
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&l.channel.ToClient, l.next, l.handle, reply.Sealed, &inner); err != nil {
		t.Fatal(err)
	}
	l.next++
	return &inner
}

func call(t *testing.T, c *testclient.Client, typ protocol.Type, req, reply protocol.Message) {
	t.Helper()
	out, err := c.RoundTrip(context.Background(), mustEncode(t, typ, req))
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.Decode(out, typ, reply); err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
}

// TestHostSeesNoSecret records every byte cofferd sends to and receives
// from a vault (the software vault as softvault.Serve serves it on a unix
// socket) while a user registers, logs in, releases, fails a login, changes
// password, logs in again and deletes, and checks that no password, backup
// key, OPAQUE export or session key, or session channel key appears in it,
// nor in cofferd's debug log.
func TestHostSeesNoSecret(t *testing.T) {
	ctx := context.Background()
	sock := shortSocket(t)
	dir := t.TempDir()
	pub := softvaulttest.ServeDev(t, dir, sock)

	rec := &recording{}
	dev := NewStreamDevice("vault", recordingDialer(transport.UnixDialer(sock), rec), StreamOptions{MinBackoff: 10 * time.Millisecond, Log: quiet})
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	accounts, accts, tokens := testAccounts(t, "alice")
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, Log: log, PollInterval: 20 * time.Millisecond})
	waitFor(t, "the device to connect", dev.Connected)
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)

	password1 := []byte("first password, long enough to be unmistakable")
	password2 := []byte("second password, also long enough to be unmistakable")
	backupKey := make([]byte, 32)
	rand.Read(backupKey)

	if _, err := alice.Register(ctx, password1, backupKey, 10); err != nil {
		t.Fatal(err)
	}
	l1 := manualLogin(t, alice, password1)
	if !bytes.Equal(l1.backupKey, backupKey) {
		t.Fatal("login released another key")
	}
	if r := l1.command(t, alice, &protocol.SessionCommand{Command: protocol.CommandRelease}); r.Receipt == nil {
		t.Fatal("release without receipt")
	}
	l1.command(t, alice, &protocol.SessionCommand{Command: protocol.CommandClose})
	if _, _, err := alice.Login(ctx, password2); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	s, _, err := alice.Login(ctx, password1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangePassword(ctx, password2, 10); err != nil {
		t.Fatal(err)
	}
	l2 := manualLogin(t, alice, password2)
	if !bytes.Equal(l2.backupKey, backupKey) {
		t.Fatal("login after change released another key")
	}
	if r := l2.command(t, alice, &protocol.SessionCommand{Command: protocol.CommandDelete}); r.Receipt == nil {
		t.Fatal("delete without receipt")
	}

	sent, received := rec.bytes()
	all := append(append([]byte{}, sent...), received...)
	// The recorder worked: it saw the traffic, including the clear user id.
	if len(sent) < 2000 || len(received) < 2000 || !bytes.Contains(sent, accts["alice"].UserID) {
		t.Fatalf("recorded only %d bytes sent, %d received", len(sent), len(received))
	}
	secrets := map[string][]byte{
		"password 1":             password1,
		"password 2":             password2,
		"backup key K":           backupKey,
		"export key 1":           l1.exportKey,
		"export key 2":           l2.exportKey,
		"session key 1":          l1.sessionKey,
		"session key 2":          l2.sessionKey,
		"to-vault key 1":         l1.channel.ToVault[:],
		"to-client key 1":        l1.channel.ToClient[:],
		"to-vault key 2":         l2.channel.ToVault[:],
		"to-client key 2":        l2.channel.ToClient[:],
		"password 1 prefix (16)": password1[:16],
		"K prefix (8)":           backupKey[:8],
		"export key 1 prefix":    l1.exportKey[:8],
		"session key 1 prefix":   l1.sessionKey[:8],
	}
	if found := hasAny(all, secrets); len(found) > 0 {
		t.Fatalf("the host saw %v", found)
	}
	// Nor does cofferd's log, in any spelling.
	logText := []byte(logs.String())
	if !bytes.Contains(logText, []byte("login-start")) {
		t.Fatal("the debug log did not record the requests")
	}
	inLog := map[string][]byte{}
	for name, v := range secrets {
		inLog[name] = v
		inLog[name+" (hex)"] = []byte(hex.EncodeToString(v))
	}
	if found := hasAny(logText, inLog); len(found) > 0 {
		t.Fatalf("cofferd's log holds %v", found)
	}
}
