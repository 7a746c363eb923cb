package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
)

// The host replays one RegisterStart three times, then mixes the three
// runs' messages in every way it can: each reply draws its own response
// nonce and is sealed under its own key and nonce, a reply opens for the
// client only exactly as the vault sent it, and a RegisterFinish opens only
// in its own run, once. (The end-to-end forgery against the product client
// is client.TestReplayedRegisterStartCannotForgeTheReply.)
func TestReplayedRegistrationMessagesFailSafe(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{})
	user := []byte("rex")
	reg, blinded, err := opaque.NewClientRegistration(rand.Reader, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	enc, sealed, secret, err := protocol.SealRegistration(h.v.Identity().HPKEKey, &protocol.RegisterStartInner{UserID: user, Blinded: blinded})
	if err != nil {
		t.Fatal(err)
	}
	start, _ := protocol.Encode(protocol.TypeRegisterStart, &protocol.RegisterStart{UserID: user, Enc: enc, Sealed: sealed})
	var replies [3]protocol.RegisterStartReply
	for i := range replies {
		if err := protocol.Decode(h.v.handle(ctx, start), protocol.TypeRegisterStart, &replies[i]); err != nil {
			t.Fatalf("replay %d: %v", i, err)
		}
	}

	// Unrelated replies: fresh nonces, and no keystream in common where the
	// host knows the plaintext (it ends with the public AKE key).
	ake := h.v.Identity().AKEKey
	stream := func(r protocol.RegisterStartReply) []byte {
		ct := r.Sealed[:len(r.Sealed)-16]
		s := bytes.Clone(ct[len(ct)-len(ake):])
		for i := range s {
			s[i] ^= ake[i]
		}
		return s
	}
	for i := range replies {
		for j := range i {
			if bytes.Equal(replies[i].ResponseNonce, replies[j].ResponseNonce) {
				t.Fatalf("replies %d and %d carry the same response nonce", j, i)
			}
			if bytes.Equal(stream(replies[i]), stream(replies[j])) {
				t.Fatalf("replies %d and %d share a keystream", j, i)
			}
		}
	}

	// Every splice of handle, response nonce and ciphertext from the three
	// runs is refused by the client, except each reply as sent.
	for i, hr := range replies {
		for j, nr := range replies {
			for k, cr := range replies {
				keys, err := secret.Keys(nr.ResponseNonce)
				if err != nil {
					t.Fatal(err)
				}
				var inner protocol.RegisterStartReplyInner
				err = keys.StartReply.OpenMessage(hr.Handle, cr.Sealed, &inner)
				if genuine := i == j && j == k; genuine != (err == nil) {
					t.Errorf("handle %d, nonce %d, ciphertext %d: open gave %v", i, j, k, err)
				}
				keys.Wipe()
			}
		}
	}

	// The client finishes run 0. Its RegisterFinish does not open in run 1
	// (another key, another handle), which it consumes; in run 0 it
	// registers; replayed, it finds no registration.
	keys, _ := secret.Keys(replies[0].ResponseNonce)
	var resp protocol.RegisterStartReplyInner
	if err := keys.StartReply.OpenMessage(replies[0].Handle, replies[0].Sealed, &resp); err != nil {
		t.Fatal(err)
	}
	rec, exportKey, err := reg.Finalize(rand.Reader, append(resp.Evaluated, resp.ServerPublicKey...), opaque.Identities{Client: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	backupKey := newBackupKey(t)
	wrapped, _ := protocol.WrapKey(rand.Reader, exportKey, user, backupKey)
	finishSealed, err := keys.Finish.SealMessage(replies[0].Handle, &protocol.RegisterFinishInner{Record: rec.Bytes(), WrappedKey: wrapped, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	finish := func(handle []byte) (*protocol.SealedReply, error) {
		req, _ := protocol.Encode(protocol.TypeRegisterFinish, &protocol.RegisterFinish{Handle: handle, Sealed: finishSealed})
		var done protocol.SealedReply
		return &done, protocol.Decode(h.v.handle(ctx, req), protocol.TypeRegisterFinish, &done)
	}
	_, err = finish(replies[1].Handle)
	wantCode(t, err, protocol.CodeAuthentication)
	if h.committedRecord("rex") != nil {
		t.Fatal("a RegisterFinish spliced into another run was stored")
	}
	done, err := finish(replies[0].Handle)
	if err != nil {
		t.Fatal(err)
	}
	commits, _ := h.store.Stats()
	_, err = finish(replies[0].Handle)
	wantCode(t, err, protocol.CodeUnknownHandle)
	if again, _ := h.store.Stats(); again != commits {
		t.Fatal("a replayed RegisterFinish committed")
	}

	// The finish reply opens under run 0's finish-reply key only.
	for i, r := range replies {
		other, _ := secret.Keys(r.ResponseNonce)
		for name, k := range map[string]*protocol.OneTimeKey{"start-reply": &other.StartReply, "finish": &other.Finish, "finish-reply": &other.FinishReply} {
			var sr protocol.SignedReceipt
			err := k.OpenMessage(replies[0].Handle, done.Sealed, &sr)
			if genuine := i == 0 && name == "finish-reply"; genuine != (err == nil) {
				t.Errorf("finish reply under run %d's %s key: %v", i, name, err)
			}
			if err == nil {
				r, err := sr.Verify(h.v.Identity().SigningKey)
				if err != nil || r.Kind != protocol.ReceiptRegistered || !bytes.Equal(r.RecordHash, protocol.RecordHash(rec.Bytes(), wrapped, 3)) {
					t.Errorf("receipt %+v: %v", r, err)
				}
			}
		}
	}
	// Runs 1 and 2 hold nothing the host can use: run 1 was dropped by the
	// spliced finish, and run 2 opens nothing but its own client's finish.
	_, err = finish(replies[1].Handle)
	wantCode(t, err, protocol.CodeUnknownHandle)
	_, err = finish(replies[2].Handle)
	wantCode(t, err, protocol.CodeAuthentication)
	mustLogin(t, h.client("rex"), "pw", backupKey)
}
