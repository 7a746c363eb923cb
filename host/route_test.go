package host

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

func routeSeeds(t testing.TB) [][]byte {
	uid := []byte("0123456789abcdef")
	h := bytes.Repeat([]byte{7}, 16)
	return [][]byte{
		mustEncode(t, protocol.TypeIdentity, &protocol.Empty{}),
		mustEncode(t, protocol.TypeStatus, &protocol.Empty{}),
		mustEncode(t, protocol.TypeRegisterStart, &protocol.RegisterStart{UserID: uid, Enc: make([]byte, 32), Sealed: make([]byte, 64)}),
		mustEncode(t, protocol.TypeRegisterFinish, &protocol.RegisterFinish{Handle: h, Sealed: make([]byte, 300)}),
		mustEncode(t, protocol.TypeLoginStart, &protocol.LoginStart{UserID: uid, KE1: make([]byte, 96)}),
		mustEncode(t, protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: h, KE3: make([]byte, 64)}),
		mustEncode(t, protocol.TypeSession, &protocol.Session{Handle: h, Seq: 1, Sealed: make([]byte, 40)}),
		mustEncode(t, protocol.TypeUserStatus, &protocol.UserStatusRequest{UserID: uid, Nonce: make([]byte, 32)}),
		realmRequest(t, protocol.TypeRealmProbe, uid),
		realmRequest(t, protocol.TypeRealmChallenge, uid),
		realmRequest(t, protocol.TypeRealmEvaluate, uid),
		realmRequest(t, protocol.TypeRealmUnlock, uid),
		realmRequest(t, protocol.TypeRealmRegister, uid),
		mustEncode(t, protocol.TypeRealmSession, &protocol.Session{Handle: h, Seq: 1, Sealed: make([]byte, 40)}),
		protocol.EncodeError(protocol.Errorf(protocol.CodeBusy, "busy")),
		{}, {0xa0}, {0xff}, []byte("garbage"),
		// Well-formed, but not requests a client sends.
		mustEncode(t, protocol.TypeUnsignedIdentity, &protocol.Empty{}),
		mustEncode(t, protocol.TypeInstallIdentity, &protocol.SignedIdentity{Body: []byte{0xa0}, Signature: make([]byte, 64)}),
		rawEnvelope(t, 11), rawEnvelope(t, 15), rawEnvelope(t, 22), rawEnvelope(t, 255),
		// A user-status without its user id and nonce: decoded strictly.
		rawEnvelope(t, uint(protocol.TypeUserStatus)),
		// A realm request without its clear fields.
		rawEnvelope(t, uint(protocol.TypeRealmEvaluate)),
	}
}

// rawEnvelope is a version-1 envelope of any type with an empty body, which
// protocol.Marshal would refuse to build for an unknown type.
func rawEnvelope(t testing.TB, typ uint) []byte {
	b, err := cborMarshal(map[int]any{1: protocol.Version, 2: typ, 3: map[int]any{}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// relayed is the allow-list, spelled out independently of ParseRoute: the
// client requests of SPEC.md and REALMS.md 7, never provisioning.
func relayed(t protocol.Type) bool {
	return (t >= protocol.TypeIdentity && t <= protocol.TypeStatus) || t == protocol.TypeUserStatus ||
		(t >= protocol.TypeRealmProbe && t <= protocol.TypeRealmSession)
}

// namesUser: the requests whose clear user id cofferd checks.
func namesUser(t protocol.Type) bool {
	return t == protocol.TypeRegisterStart || t == protocol.TypeLoginStart || t == protocol.TypeUserStatus ||
		(t >= protocol.TypeRealmProbe && t <= protocol.TypeRealmRegister)
}

func TestParseRoute(t *testing.T) {
	seeds := routeSeeds(t)
	wantTypes := []protocol.Type{1, 7, 2, 3, 4, 5, 6, 10, 16, 17, 18, 19, 20, 21}
	for i, typ := range wantTypes {
		r, err := ParseRoute(seeds[i])
		if err != nil || r.Type != typ {
			t.Fatalf("seed %d: %+v %v", i, r, err)
		}
		if namesUser(typ) != (r.UserID != nil) {
			t.Fatalf("seed %d: user id %x", i, r.UserID)
		}
	}
	for _, bad := range seeds[len(wantTypes):] {
		if _, err := ParseRoute(bad); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
	// The provisioning requests are refused as such (cofferd answers 403).
	for _, typ := range []protocol.Type{protocol.TypeUnsignedIdentity, protocol.TypeInstallIdentity} {
		_, err := ParseRoute(mustEncodeRaw(t, typ, map[int]any{}))
		if !errors.Is(err, ErrNotRelayed) || !strings.Contains(err.Error(), typ.String()) {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	// A login-start whose KE1 is short is refused: it is decoded strictly.
	short := mustEncodeRaw(t, protocol.TypeLoginStart, map[int]any{1: []byte("u"), 2: make([]byte, 95)})
	if _, err := ParseRoute(short); err == nil {
		t.Fatal("short KE1 accepted")
	}
	// An unknown field in a login-start is refused.
	extra := mustEncodeRaw(t, protocol.TypeLoginStart, map[int]any{1: []byte("u"), 2: make([]byte, 96), 3: 1})
	if _, err := ParseRoute(extra); err == nil {
		t.Fatal("unknown field accepted")
	}
}

// FuzzRoute: the routing parser never panics, accepts only request types,
// and returns a user id exactly for the two requests that carry one, equal
// to what a strict decode of the body finds.
func FuzzRoute(f *testing.F) {
	for _, s := range routeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRoute(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if !relayed(r.Type) {
			t.Fatalf("accepted type %d", r.Type)
		}
		if r.SpendsGuesses() != (r.Type == protocol.TypeLoginStart || r.Type == protocol.TypeRealmChallenge || r.Type == protocol.TypeRealmEvaluate) {
			t.Fatalf("%s: spends guesses %v", r.Type, r.SpendsGuesses())
		}
		switch r.Type {
		case protocol.TypeLoginStart:
			var m protocol.LoginStart
			if err := protocol.Decode(b, r.Type, &m); err != nil || !bytes.Equal(m.UserID, r.UserID) {
				t.Fatalf("login-start user id %x, decode %x %v", r.UserID, m.UserID, err)
			}
		case protocol.TypeUserStatus:
			var m protocol.UserStatusRequest
			if err := protocol.Decode(b, r.Type, &m); err != nil || !bytes.Equal(m.UserID, r.UserID) {
				t.Fatalf("user-status user id %x, decode %x %v", r.UserID, m.UserID, err)
			}
		case protocol.TypeRegisterStart:
			var m protocol.RegisterStart
			if err := protocol.Decode(b, r.Type, &m); err != nil || !bytes.Equal(m.UserID, r.UserID) {
				t.Fatalf("register-start user id %x, decode %x %v", r.UserID, m.UserID, err)
			}
		case protocol.TypeRealmProbe, protocol.TypeRealmChallenge, protocol.TypeRealmEvaluate,
			protocol.TypeRealmUnlock, protocol.TypeRealmRegister:
			var m protocol.RealmRequest
			if err := protocol.Decode(b, r.Type, &m); err != nil || !bytes.Equal(m.UserID, r.UserID) {
				t.Fatalf("%s user id %x, decode %x %v", r.Type, r.UserID, m.UserID, err)
			}
		default:
			if r.UserID != nil {
				t.Fatalf("%s with a user id", r.Type)
			}
		}
		if len(r.UserID) > protocol.MaxUserIDSize || (r.UserID != nil && len(r.UserID) == 0) {
			t.Fatalf("user id of %d bytes", len(r.UserID))
		}
		// inspectReply must not panic on anything either.
		inspectReply(r.Type, b)
	})
}

// replySeeds are vault replies worth counting or not: login-start replies
// with an attempt, a locked-for-ever and a locked-for-now receipt, an
// error, a session reply, and the same bytes altered.
func replySeeds(t testing.TB) [][]byte {
	_, key, _ := ed25519.GenerateKey(nil)
	start := func(r *protocol.Receipt) []byte {
		sr, err := protocol.SignReceipt(key, r)
		if err != nil {
			t.Fatal(err)
		}
		return mustEncode(t, protocol.TypeLoginStart, &protocol.LoginStartReply{Handle: bytes.Repeat([]byte{7}, 16),
			KE2: make([]byte, protocol.KE2Size), Receipt: sr})
	}
	uid := []byte("0123456789abcdef")
	seeds := [][]byte{
		start(&protocol.Receipt{Kind: protocol.ReceiptAttempt, UserID: uid, Generation: 1 << 63, Limit: 10, TriesLeft: 9, StoreSequence: 3}),
		start(&protocol.Receipt{Kind: protocol.ReceiptLocked, UserID: uid, Generation: 1 << 63, Limit: 3, FailedSinceSuccess: 3, StoreSequence: 9}),
		start(&protocol.Receipt{Kind: protocol.ReceiptLocked, UserID: uid, Generation: 1 << 63, Limit: 3, FailedSinceSuccess: 2, StoreSequence: 9, RevivableMillis: 29_000}),
		mustEncode(t, protocol.TypeSession, &protocol.SessionReply{Seq: 1, Sealed: make([]byte, 40)}),
		protocol.EncodeError(protocol.Errorf(protocol.CodeTampered, "store")),
	}
	for _, b := range seeds[:3] {
		c := bytes.Clone(b)
		c[4] = byte(protocol.TypeLoginFinish) // another type, same body
		seeds = append(seeds, c)
	}
	return seeds
}

// FuzzInspectReply: what cofferd reads of a vault reply for its metrics
// and log is what a strict decode of the whole reply finds; the shortcut
// that skips the decode of replies with nothing to count changes nothing.
func FuzzInspectReply(f *testing.F) {
	for _, s := range routeSeeds(f) {
		f.Add(uint8(protocol.TypeLoginStart), s)
	}
	for _, s := range replySeeds(f) {
		f.Add(uint8(protocol.TypeLoginStart), s)
		f.Add(uint8(protocol.TypeSession), s)
	}
	f.Fuzz(func(t *testing.T, typ uint8, b []byte) {
		info := inspectReply(protocol.Type(typ), b)
		if info.errCode != 0 && codeLabel(info.errCode) == "" {
			t.Fatal("empty label")
		}
		if want := inspectReplyStrict(protocol.Type(typ), b); info != want {
			t.Fatalf("inspectReply = %+v, a strict decode says %+v", info, want)
		}
	})
}

// The seeds above mean what they say: a locked receipt is counted, with its
// counters, and the rest is not.
func TestInspectReply(t *testing.T) {
	s := replySeeds(t)
	for i, want := range []replyInfo{{}, {locked: true, limit: 3, failedSinceSuccess: 3},
		{locked: true, limit: 3, failedSinceSuccess: 2, revivable: 29 * time.Second}, {}, {errCode: protocol.CodeTampered}, {}, {}, {}} {
		if got := inspectReply(protocol.TypeLoginStart, s[i]); got != want {
			t.Errorf("seed %d: %+v, want %+v", i, got, want)
		}
	}
	if got := inspectReply(protocol.TypeSession, s[1]); got != (replyInfo{}) {
		t.Errorf("a login-start reply to another request counted: %+v", got)
	}
}
