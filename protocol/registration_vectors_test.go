package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// registrationVectors is testdata/registration/vectors.json, written by
// gen_vectors.py beside it: one registration run computed without this
// package (RFC 9180 and RFC 9458 key schedules by hand in Python,
// X25519 and ChaCha20-Poly1305 from another library), with a fixed
// ephemeral key so that it includes the client's RegisterStart.
type registrationVectors struct {
	Inputs struct {
		VaultKey         string `json:"vault_hpke_private_key"`
		UserID           string `json:"user_id"`
		Blinded          string `json:"blinded"`
		ResponseNonce    string `json:"response_nonce"`
		Handle           string `json:"handle"`
		Evaluated        string `json:"evaluated"`
		ServerPublicKey  string `json:"server_public_key"`
		Record           string `json:"record"`
		Wrapped          string `json:"wrapped"`
		Limit            uint   `json:"limit"`
		ReceiptBody      string `json:"receipt_body"`
		ReceiptSignature string `json:"receipt_signature"`
	} `json:"inputs"`
	Schedule struct {
		VaultPublicKey   string `json:"vault_hpke_public_key"`
		Enc              string `json:"enc"`
		Secret           string `json:"secret"`
		StartReplyKey    string `json:"start_reply_key"`
		StartReplyNonce  string `json:"start_reply_nonce"`
		FinishKey        string `json:"finish_key"`
		FinishNonce      string `json:"finish_nonce"`
		FinishReplyKey   string `json:"finish_reply_key"`
		FinishReplyNonce string `json:"finish_reply_nonce"`
	} `json:"key_schedule"`
	Messages struct {
		RegisterStart       string `json:"register_start"`
		RegisterStartReply  string `json:"register_start_reply"`
		RegisterFinish      string `json:"register_finish"`
		RegisterFinishReply string `json:"register_finish_reply"`
	} `json:"messages"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The vault opens the vector's RegisterStart and derives the vector's keys;
// both ends then seal exactly the vector's messages.
func TestRegistrationVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/registration/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v registrationVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	in, ks, msg := v.Inputs, v.Schedule, v.Messages
	handle := unhex(t, in.Handle)

	key, err := HPKEKeyFromBytes(unhex(t, in.VaultKey))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(key.PublicKey().Bytes()); got != ks.VaultPublicKey {
		t.Fatalf("vault HPKE public key %s, vector %s", got, ks.VaultPublicKey)
	}

	// The vault's half: open the client's RegisterStart.
	var start RegisterStart
	if err := Decode(unhex(t, msg.RegisterStart), TypeRegisterStart, &start); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(start.Enc) != ks.Enc {
		t.Fatal("enc differs from the vector")
	}
	inner, secret, err := OpenRegistration(key, &start)
	if err != nil {
		t.Fatalf("the vector's RegisterStart does not open: %v", err)
	}
	if hex.EncodeToString(inner.UserID) != in.UserID || hex.EncodeToString(inner.Blinded) != in.Blinded {
		t.Fatalf("opened %+v", inner)
	}
	if hex.EncodeToString(secret.secret[:]) != ks.Secret {
		t.Fatalf("exported secret %x, vector %s", secret.secret, ks.Secret)
	}
	keys, err := secret.Keys(unhex(t, in.ResponseNonce))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got       *OneTimeKey
		key, once string
	}{
		{"start-reply", &keys.StartReply, ks.StartReplyKey, ks.StartReplyNonce},
		{"finish", &keys.Finish, ks.FinishKey, ks.FinishNonce},
		{"finish-reply", &keys.FinishReply, ks.FinishReplyKey, ks.FinishReplyNonce},
	} {
		if hex.EncodeToString(c.got.key[:]) != c.key || hex.EncodeToString(c.got.nonce[:]) != c.once {
			t.Errorf("%s key %x nonce %x, vector %s %s", c.name, c.got.key, c.got.nonce, c.key, c.once)
		}
	}
	vaultKeys, clientKeys := keys, keys // each end's copy: one use each

	// Each message, sealed by its sender, is the vector's; each vector
	// message opens for its receiver.
	replySealed, err := vaultKeys.StartReply.SealMessage(handle, &RegisterStartReplyInner{
		Evaluated: unhex(t, in.Evaluated), ServerPublicKey: unhex(t, in.ServerPublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := Encode(TypeRegisterStart, &RegisterStartReply{Handle: handle, Sealed: replySealed, ResponseNonce: unhex(t, in.ResponseNonce)})
	if err != nil || hex.EncodeToString(reply) != msg.RegisterStartReply {
		t.Errorf("register-start reply differs from the vector (%v)", err)
	}
	var replyInner RegisterStartReplyInner
	if err := clientKeys.StartReply.OpenMessage(handle, replySealed, &replyInner); err != nil || hex.EncodeToString(replyInner.Evaluated) != in.Evaluated {
		t.Errorf("client opens the reply: %v", err)
	}

	finishInner := &RegisterFinishInner{Record: unhex(t, in.Record), WrappedKey: unhex(t, in.Wrapped), Limit: in.Limit}
	finishSealed, err := clientKeys.Finish.SealMessage(handle, finishInner)
	if err != nil {
		t.Fatal(err)
	}
	finish, err := Encode(TypeRegisterFinish, &RegisterFinish{Handle: handle, Sealed: finishSealed})
	if err != nil || hex.EncodeToString(finish) != msg.RegisterFinish {
		t.Errorf("register-finish differs from the vector (%v)", err)
	}
	var gotFinish RegisterFinishInner
	if err := vaultKeys.Finish.OpenMessage(handle, finishSealed, &gotFinish); err != nil || gotFinish.Limit != in.Limit {
		t.Errorf("vault opens the finish: %v", err)
	}

	receipt := &SignedReceipt{Body: unhex(t, in.ReceiptBody), Signature: unhex(t, in.ReceiptSignature)}
	receiptSealed, err := vaultKeys.FinishReply.SealMessage(handle, receipt)
	if err != nil {
		t.Fatal(err)
	}
	done, err := Encode(TypeRegisterFinish, &SealedReply{Sealed: receiptSealed})
	if err != nil || hex.EncodeToString(done) != msg.RegisterFinishReply {
		t.Errorf("register-finish reply differs from the vector (%v)", err)
	}
	var gotReceipt SignedReceipt
	if err := clientKeys.FinishReply.OpenMessage(handle, receiptSealed, &gotReceipt); err != nil || !bytes.Equal(gotReceipt.Body, receipt.Body) {
		t.Errorf("client opens the receipt: %v", err)
	}
}

// The response keys are RFC 9458's, computed here from RFC 5869's formulas
// with HMAC-SHA256, for random inputs: PRK = HMAC(salt, IKM) with salt =
// enc ‖ response_nonce; T(1) = HMAC(PRK, info ‖ 0x01) (every output is at
// most one block).
func TestRegistrationKeysAreRFC9458sByHand(t *testing.T) {
	hmacSHA256 := func(key []byte, parts ...[]byte) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	for range 20 {
		s := &RegistrationSecret{enc: make([]byte, 32)}
		rand.Read(s.enc)
		rand.Read(s.secret[:])
		nonce, _ := NewResponseNonce(rand.Reader)
		keys, err := s.Keys(nonce)
		if err != nil {
			t.Fatal(err)
		}
		prk := hmacSHA256(append(bytes.Clone(s.enc), nonce...), s.secret[:])
		expand := func(info string, n int) []byte { return hmacSHA256(prk, []byte(info), []byte{1})[:n] }
		for _, c := range []struct {
			got   *OneTimeKey
			label string
		}{{&keys.StartReply, "start-reply"}, {&keys.Finish, "finish"}, {&keys.FinishReply, "finish-reply"}} {
			if !bytes.Equal(c.got.key[:], expand("coffer/v1 register "+c.label+" key", 32)) ||
				!bytes.Equal(c.got.nonce[:], expand("coffer/v1 register "+c.label+" nonce", 12)) {
				t.Fatalf("%s key or nonce is not HKDF-Expand(PRK, label)", c.label)
			}
		}
	}
}
