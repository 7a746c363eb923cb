package vault

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// loginPending runs KE1 → KE2 with the right password and returns a function
// that sends the (correct) KE3 later and returns the verified release
// receipt.
func loginPending(t testing.TB, h *harness, user, password string) (func() (*protocol.Receipt, error), *protocol.LoginStartReply, error) {
	t.Helper()
	cl, ke1, err := opaque.NewClientLogin(rand.Reader, []byte(password))
	if err != nil {
		return nil, nil, err
	}
	req, _ := protocol.Encode(protocol.TypeLoginStart, &protocol.LoginStart{UserID: []byte(user), KE1: ke1})
	var start protocol.LoginStartReply
	if err := protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeLoginStart, &start); err != nil {
		return nil, nil, err
	}
	ke3, sessionKey, _, err := cl.Finish(start.KE2, opaque.Identities{Client: []byte(user)}, opaqueContext, nil)
	if err != nil {
		return nil, nil, err
	}
	return func() (*protocol.Receipt, error) {
		fin, _ := protocol.Encode(protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: start.Handle, KE3: ke3})
		var done protocol.SealedReply
		if err := protocol.Decode(h.v.handle(context.Background(), fin), protocol.TypeLoginFinish, &done); err != nil {
			return nil, err
		}
		keys, err := protocol.DeriveSessionKeys(sessionKey, start.Handle)
		if err != nil {
			return nil, err
		}
		var inner protocol.SessionReplyInner
		if err := protocol.OpenMessage(&keys.ToClient, 0, start.Handle, done.Sealed, &inner); err != nil {
			return nil, err
		}
		return inner.Receipt.Verify(h.v.Identity().SigningKey)
	}, &start, nil
}

func registerStart(t testing.TB, h *harness, user string) (*protocol.RegisterStartReply, protocol.RegistrationKeys, *opaque.ClientRegistration) {
	t.Helper()
	reg, blinded, err := opaque.NewClientRegistration(rand.Reader, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	enc, sealed, secret, err := protocol.SealRegistration(h.v.Identity().HPKEKey, &protocol.RegisterStartInner{UserID: []byte(user), Blinded: blinded})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := protocol.Encode(protocol.TypeRegisterStart, &protocol.RegisterStart{UserID: []byte(user), Enc: enc, Sealed: sealed})
	var reply protocol.RegisterStartReply
	if err := protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeRegisterStart, &reply); err != nil {
		t.Fatal(err)
	}
	keys, err := secret.Keys(reply.ResponseNonce)
	if err != nil {
		t.Fatal(err)
	}
	return &reply, keys, reg
}

func TestRegistrationChannelRejectsTampering(t *testing.T) {
	h := newHarness(t, Options{})
	_, blinded, _ := opaque.NewClientRegistration(rand.Reader, []byte("pw"))
	enc, sealed, _, err := protocol.SealRegistration(h.v.Identity().HPKEKey, &protocol.RegisterStartInner{UserID: []byte("sam"), Blinded: blinded})
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *protocol.RegisterStart) error {
		req, err := protocol.Encode(protocol.TypeRegisterStart, m)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeRegisterStart, &protocol.RegisterStartReply{})
	}
	for i := range sealed {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 0x40
		wantCode(t, send(&protocol.RegisterStart{UserID: []byte("sam"), Enc: enc, Sealed: bad}), protocol.CodeAuthentication)
	}
	badEnc := append([]byte(nil), enc...)
	badEnc[5] ^= 1
	wantCode(t, send(&protocol.RegisterStart{UserID: []byte("sam"), Enc: badEnc, Sealed: sealed}), protocol.CodeAuthentication)
	// The routed user id must be the sealed one: the host cannot redirect
	// a registration to another account.
	wantCode(t, send(&protocol.RegisterStart{UserID: []byte("eve"), Enc: enc, Sealed: sealed}), protocol.CodeMalformed)
	if h.v.registrations.len() != 0 {
		t.Fatal("a refused registration left state behind")
	}
}

func TestRegisterFinishRejectsTamperingReplayAndLimits(t *testing.T) {
	h := newHarness(t, Options{MaxLimit: 8})
	reply, keys, reg := registerStart(t, h, "tom")
	var resp protocol.RegisterStartReplyInner
	if err := keys.StartReply.OpenMessage(reply.Handle, reply.Sealed, &resp); err != nil {
		t.Fatal(err)
	}
	rec, exportKey, err := reg.Finalize(rand.Reader, append(resp.Evaluated, resp.ServerPublicKey...), opaque.Identities{Client: []byte("tom")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, _ := protocol.WrapKey(rand.Reader, exportKey, []byte("tom"), newBackupKey(t))
	finish := func(limit uint, flip bool) error {
		k := keys.Finish // the test seals more than once, to probe the vault
		sealed, err := k.SealMessage(reply.Handle, &protocol.RegisterFinishInner{Record: rec.Bytes(), WrappedKey: wrapped, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if flip {
			sealed[0] ^= 1
		}
		req, _ := protocol.Encode(protocol.TypeRegisterFinish, &protocol.RegisterFinish{Handle: reply.Handle, Sealed: sealed})
		return protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeRegisterFinish, &protocol.SealedReply{})
	}
	// A tampered finish consumes the registration: it must start again.
	wantCode(t, finish(5, true), protocol.CodeAuthentication)
	wantCode(t, finish(5, false), protocol.CodeUnknownHandle)

	reply, keys, reg = registerStart(t, h, "tom")
	keys.StartReply.OpenMessage(reply.Handle, reply.Sealed, &resp)
	rec, exportKey, _ = reg.Finalize(rand.Reader, append(resp.Evaluated, resp.ServerPublicKey...), opaque.Identities{Client: []byte("tom")}, nil)
	wrapped, _ = protocol.WrapKey(rand.Reader, exportKey, []byte("tom"), newBackupKey(t))
	wantCode(t, finish(9, false), protocol.CodeLimit)
	if _, ok := h.store.Committed(userKey([]byte("tom"))); ok {
		t.Fatal("a refused registration was stored")
	}
}

func TestRegisteringAnExistingUserIsRefusedButATombstoneMayBeReplaced(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("uma")
	register(t, c, "pw", 1)
	if _, err := c.Register(context.Background(), []byte("other"), newBackupKey(t), 5); err == nil {
		t.Fatal("a second registration over a live record succeeded")
	} else {
		wantCode(t, err, protocol.CodeExists)
	}
	c.Login(context.Background(), []byte("wrong")) // locks it
	key := register(t, c, "fresh", 5)
	mustLogin(t, c, "fresh", key)
}

// Registration never evaluates an existing user's key: the evaluated element
// for the same blinded input differs between two registrations of one user
// and between a registration and the user's stored key.
func TestRegistrationUsesAFreshOPRFKey(t *testing.T) {
	h := newHarness(t, Options{})
	blinded := func() []byte {
		_, b, _ := opaque.NewClientRegistration(rand.Reader, []byte("pw"))
		return b
	}()
	evaluate := func() []byte {
		enc, sealed, secret, _ := protocol.SealRegistration(h.v.Identity().HPKEKey, &protocol.RegisterStartInner{UserID: []byte("vic"), Blinded: blinded})
		req, _ := protocol.Encode(protocol.TypeRegisterStart, &protocol.RegisterStart{UserID: []byte("vic"), Enc: enc, Sealed: sealed})
		var reply protocol.RegisterStartReply
		if err := protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeRegisterStart, &reply); err != nil {
			t.Fatal(err)
		}
		keys, _ := secret.Keys(reply.ResponseNonce)
		var resp protocol.RegisterStartReplyInner
		if err := keys.StartReply.OpenMessage(reply.Handle, reply.Sealed, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Evaluated
	}
	if a, b := evaluate(), evaluate(); string(a) == string(b) {
		t.Fatal("two registrations evaluated with the same OPRF key")
	}
}
