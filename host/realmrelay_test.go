package host

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// realmRequestTypes are the realm requests whose body is a RealmRequest.
var realmRequestTypes = []protocol.Type{
	protocol.TypeRealmProbe, protocol.TypeRealmChallenge, protocol.TypeRealmEvaluate,
	protocol.TypeRealmUnlock, protocol.TypeRealmRegister,
}

func realmRequest(t testing.TB, typ protocol.Type, userID []byte) []byte {
	return mustEncode(t, typ, &protocol.RealmRequest{UserID: userID, Enc: make([]byte, 32), Sealed: make([]byte, 64)})
}

func realmSession(t testing.TB) []byte {
	return mustEncode(t, protocol.TypeRealmSession, &protocol.Session{Handle: bytes.Repeat([]byte{9}, 16), Seq: 1, Sealed: make([]byte, 40)})
}

// TestRealmRequestsAreRelayed: every realm request an account sends for its
// own user id, and a realm session, reaches its device byte for byte and
// the vault's reply comes back.
func TestRealmRequestsAreRelayed(t *testing.T) {
	accounts, accts, tokens := testAccounts(t, "alice")
	dev := &countingDevice{Device: newStub("stub")}
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	ctx := context.Background()
	reqs := [][]byte{realmSession(t)}
	for _, typ := range realmRequestTypes {
		reqs = append(reqs, realmRequest(t, typ, accts["alice"].UserID))
	}
	for i, req := range reqs {
		reply, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if want := protocol.EncodeError(protocol.Errorf(protocol.CodeUnknownHandle, "stub")); !bytes.Equal(reply, want) {
			t.Fatalf("request %d: the device's reply was not relayed byte for byte", i)
		}
	}
	if n := dev.calls.Load(); n != int64(len(reqs)) {
		t.Fatalf("%d of %d realm requests reached the device", n, len(reqs))
	}
}

// TestRealmRequestWithAnotherAccountsUserIDIsForbidden plays Mallory: she
// sends every realm request (a well-formed, sealed-looking RealmRequest)
// naming Alice's user id. cofferd refuses each with 403 and none reaches
// the vault, so Mallory can never spend Alice's realm guesses or open a
// ticket in her name through this cofferd.
func TestRealmRequestWithAnotherAccountsUserIDIsForbidden(t *testing.T) {
	accounts, accts, tokens := testAccounts(t, "alice", "mallory")
	dev := &countingDevice{Device: newStub("stub")}
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	ctx := context.Background()
	for _, typ := range realmRequestTypes {
		_, err := post(ctx, http.DefaultClient, hs.URL, tokens["mallory"], realmRequest(t, typ, accts["alice"].UserID))
		if statusOf(err) != 403 {
			t.Fatalf("%s naming alice from mallory's account: %v", typ, err)
		}
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("%d forbidden realm requests reached the vault", n)
	}
	// A RealmRequest whose clear fields do not decode strictly is refused
	// too: cofferd cannot check a user id it cannot read.
	for _, body := range []map[int]any{
		{2: make([]byte, 32), 3: make([]byte, 64)},                                   // no user id
		{1: []byte{}, 2: make([]byte, 32), 3: make([]byte, 64)},                      // empty user id
		{1: accts["mallory"].UserID, 2: make([]byte, 31), 3: make([]byte, 64)},       // short enc
		{1: accts["mallory"].UserID, 2: make([]byte, 32), 3: make([]byte, 64), 4: 1}, // unknown field
	} {
		if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["mallory"], mustEncodeRaw(t, protocol.TypeRealmEvaluate, body)); statusOf(err) != 400 {
			t.Fatalf("malformed realm request %v: %v", body, err)
		}
	}
	if n := dev.calls.Load(); n != 0 {
		t.Fatalf("%d refused realm requests reached the vault", n)
	}
}

// TestRealmGuessRequestsAreRateLimited: realm-challenge and realm-evaluate
// draw from the account's login-start bucket, so an account cannot guess
// faster by mixing them with login starts (or with each other); the other
// realm requests are not limited.
func TestRealmGuessRequestsAreRateLimited(t *testing.T) {
	accounts, accts, tokens := testAccounts(t, "alice", "bob")
	dev := &countingDevice{Device: newStub("stub")}
	now := time.Unix(1_000_000, 0)
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts, LoginRate: DefaultLoginRate, LoginBurst: 5,
		Now: func() time.Time { return now }})
	ctx := context.Background()
	send := func(who string, req []byte) error {
		_, err := post(ctx, http.DefaultClient, hs.URL, tokens[who], req)
		return err
	}
	uid := accts["alice"].UserID
	burst := [][]byte{
		realmRequest(t, protocol.TypeRealmEvaluate, uid), realmRequest(t, protocol.TypeRealmEvaluate, uid),
		realmRequest(t, protocol.TypeRealmChallenge, uid), loginStart(t, uid), realmRequest(t, protocol.TypeRealmEvaluate, uid),
	}
	for i, req := range burst {
		if err := send("alice", req); err != nil {
			t.Fatalf("request %d of the burst: %v", i+1, err)
		}
	}
	for _, typ := range []protocol.Type{protocol.TypeRealmEvaluate, protocol.TypeRealmChallenge} {
		if err := send("alice", realmRequest(t, typ, uid)); statusOf(err) != 429 {
			t.Fatalf("%s after the burst: %v", typ, err)
		}
	}
	if err := send("alice", loginStart(t, uid)); statusOf(err) != 429 {
		t.Fatalf("login-start after a burst of realm guesses: %v", err)
	}
	if n := dev.calls.Load(); n != 5 {
		t.Fatalf("%d requests reached the device, want the 5 of the burst", n)
	}
	// The other realm requests go on, and so does another account.
	for _, typ := range []protocol.Type{protocol.TypeRealmProbe, protocol.TypeRealmUnlock, protocol.TypeRealmRegister} {
		if err := send("alice", realmRequest(t, typ, uid)); err != nil {
			t.Fatalf("%s while rate limited: %v", typ, err)
		}
	}
	if err := send("alice", realmSession(t)); err != nil {
		t.Fatalf("realm-session while rate limited: %v", err)
	}
	if err := send("bob", realmRequest(t, protocol.TypeRealmEvaluate, accts["bob"].UserID)); err != nil {
		t.Fatalf("another account: %v", err)
	}
}
