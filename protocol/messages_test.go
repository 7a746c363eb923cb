package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// mustCBOR encodes v deterministically, so that a case is refused for the
// reason it names and not for its map order.
func mustCBOR(t testing.TB, v any) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvelopeVersionAndErrors(t *testing.T) {
	b, err := Encode(TypeStatus, &Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if typ, err := PeekType(b); err != nil || typ != TypeStatus {
		t.Fatalf("%v %v", typ, err)
	}
	v2 := mustCBOR(t, map[int]any{1: 2, 2: 7, 3: cbor.RawMessage{0xa0}})
	if err := Decode(v2, TypeStatus, &Empty{}); CodeOf(err) != CodeUnsupportedVersion {
		t.Fatalf("version 2: %v", err)
	}
	e := EncodeError(Errorf(CodeBusy, "slow down"))
	err = Decode(e, TypeStatus, &Empty{})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeBusy || pe.Message != "slow down" || !errors.Is(err, &Error{Code: CodeBusy}) {
		t.Fatalf("error reply decoded as %v", err)
	}
	// An internal Go error is reduced to its code: no detail leaks.
	e = EncodeError(errors.New("disk /dev/mmcblk0 sector 12 failed"))
	if err := Decode(e, TypeStatus, &Empty{}); !errors.As(err, &pe) || pe.Code != CodeInternal || pe.Message != "" {
		t.Fatalf("internal error reply: %v", err)
	}
	if err := Decode(b, TypeIdentity, &Empty{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("reply of another type: %v", err)
	}
}

// Signing refuses what a receiver would refuse, and what is signed
// verifies. The verifying side, bad signatures included, is in the vectors
// (testdata/vectors/signed).
func TestSignedStructures(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	r := &Receipt{Kind: ReceiptAttempt, UserID: []byte("u"), Generation: 1 << 63, Limit: 10, TriesLeft: 9, StoreSequence: 4, RequestHash: RequestHash([]byte("ke1"))}
	sr, err := SignReceipt(priv, r)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sr.Verify(pub); err != nil || got.TriesLeft != 9 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := SignReceipt(priv, &Receipt{Kind: ReceiptAttempt, UserID: []byte("u"), Limit: 3, TriesLeft: 4}); err == nil {
		t.Fatal("signed a receipt with more tries left than its limit")
	}
}

// Receipts are all one size whatever they say, so that the size of a login
// reply does not tell an unknown user from a locked one or from a real
// record with a small or large limit.
func TestReceiptsHaveOneSize(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, r := range []*Receipt{
		{Kind: ReceiptAttempt, UserID: []byte("u"), Generation: 1 << 63, Limit: 1, TriesLeft: 0},
		{Kind: ReceiptAttempt, UserID: bytes.Repeat([]byte("u"), MaxUserIDSize), Generation: 1<<64 - 1, Limit: MaxLimitCeiling,
			TriesLeft: 99, FailedSinceSuccess: 1<<32 - 1, StoreSequence: 1<<64 - 1, RequestHash: RequestHash(nil),
			RecordHash: RequestHash(nil), AttemptsTotal: 1<<64 - 1, SuccessesTotal: 1<<64 - 1},
		{Kind: ReceiptLocked, UserID: []byte("someone"), Generation: 1 << 63, Limit: 30, RevivableMillis: 29_999, AttemptsTotal: 300},
	} {
		sr, err := SignReceipt(priv, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(sr.Body) != ReceiptBodySize {
			t.Fatalf("receipt %+v encodes to %d bytes, want %d", r, len(sr.Body), ReceiptBodySize)
		}
		got, err := sr.Verify(priv.Public().(ed25519.PublicKey))
		if err != nil || got.AttemptsTotal != r.AttemptsTotal || got.RevivableMillis != r.RevivableMillis {
			t.Fatalf("round trip: %+v %v", got, err)
		}
	}
}

// A receipt pads to its fixed size and decodes again; the decoding side's
// strictness (padding, totals) is in the vectors (testdata/vectors/bodies).
func TestReceiptPaddingAndTotalsAreStrict(t *testing.T) {
	r := &Receipt{Kind: ReceiptAttempt, UserID: []byte("u"), Generation: 1 << 63, Limit: 3, TriesLeft: 2, AttemptsTotal: 7}
	body, err := r.marshalPadded()
	if err != nil {
		t.Fatal(err)
	}
	var ok Receipt
	if err := Unmarshal(body, &ok); err != nil || ok.AttemptsTotal != 7 {
		t.Fatalf("%+v %v", ok, err)
	}
	if _, err := (&Receipt{Kind: ReceiptAttempt, UserID: []byte("u"), Limit: 3, RevivableMillis: 5}).marshalPadded(); err == nil {
		t.Fatal("an attempt receipt claimed to be revivable")
	}
}

func TestRegistrationChannel(t *testing.T) {
	seed := make([]byte, 32)
	rand.Read(seed)
	key, err := HPKEKeyFromBytes(seed)
	if err != nil {
		t.Fatal(err)
	}
	inner := &RegisterStartInner{UserID: []byte("u"), Blinded: bytes.Repeat([]byte{2}, ElementSize)}
	enc, sealed, cs, err := SealRegistration(key.PublicKey().Bytes(), inner)
	if err != nil {
		t.Fatal(err)
	}
	got, vs, err := OpenRegistration(key, &RegisterStart{UserID: []byte("u"), Enc: enc, Sealed: sealed})
	if err != nil || !bytes.Equal(got.Blinded, inner.Blinded) || cs.secret != vs.secret {
		t.Fatalf("open: %v, secrets equal %v", err, cs.secret == vs.secret)
	}
	nonce, _ := NewResponseNonce(rand.Reader)
	ck, _ := cs.Keys(nonce)
	vk, err := vs.Keys(nonce)
	if err != nil || ck != vk {
		t.Fatalf("the two ends derive different keys from one response nonce: %v", err)
	}
	all := []OneTimeKey{vk.StartReply, vk.Finish, vk.FinishReply}
	other, _ := NewResponseNonce(rand.Reader)
	ok, _ := vs.Keys(other)
	all = append(all, ok.StartReply, ok.Finish, ok.FinishReply)
	for i := range all {
		for j := range i {
			if all[i].key == all[j].key || all[i].nonce == all[j].nonce {
				t.Fatalf("keys %d and %d share a key or nonce", i, j)
			}
		}
	}
	if _, err := vs.Keys(nonce[:ResponseNonceSize-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short response nonce: %v", err)
	}

	// A one-time key seals one message; the other end opens it once.
	ct, err := vk.StartReply.SealMessage([]byte("h"), inner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vk.StartReply.SealMessage([]byte("h"), inner); err != ErrKeyUsed {
		t.Fatalf("a one-time key sealed twice: %v", err)
	}
	if vk.StartReply != (OneTimeKey{}) {
		t.Fatal("a used one-time key was not wiped")
	}
	spare := ck.StartReply
	var back RegisterStartInner
	if err := ck.StartReply.OpenMessage([]byte("other handle"), ct, &back); err != ErrOpen {
		t.Fatalf("opened under another aad: %v", err)
	}
	if err := ck.StartReply.OpenMessage([]byte("h"), ct, &back); err != ErrKeyUsed {
		t.Fatalf("a one-time key opened twice: %v", err)
	}
	if err := spare.OpenMessage([]byte("h"), ct, &back); err != nil || !bytes.Equal(back.Blinded, inner.Blinded) {
		t.Fatalf("open: %v", err)
	}

	sealed[0] ^= 1
	if _, _, err := OpenRegistration(key, &RegisterStart{UserID: []byte("u"), Enc: enc, Sealed: sealed}); err != ErrOpen {
		t.Fatalf("altered seal: %v", err)
	}
}

func TestSessionSealing(t *testing.T) {
	keys, err := DeriveSessionKeys(bytes.Repeat([]byte{9}, 64), bytes.Repeat([]byte{1}, HandleSize))
	if err != nil {
		t.Fatal(err)
	}
	if keys.ToVault == keys.ToClient {
		t.Fatal("both directions share a key")
	}
	other, _ := DeriveSessionKeys(bytes.Repeat([]byte{9}, 64), bytes.Repeat([]byte{2}, HandleSize))
	if other.ToVault == keys.ToVault {
		t.Fatal("session keys do not depend on the handle")
	}
	ct := Seal(&keys.ToVault, 3, []byte("h"), []byte("hello"))
	if pt, err := Open(&keys.ToVault, 3, []byte("h"), ct); err != nil || string(pt) != "hello" {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key *ChannelKey
		seq uint64
		aad string
	}{{&keys.ToClient, 3, "h"}, {&keys.ToVault, 4, "h"}, {&keys.ToVault, 3, "x"}} {
		if _, err := Open(tc.key, tc.seq, []byte(tc.aad), ct); err != ErrOpen {
			t.Fatalf("opened with the wrong key, sequence or handle: %v", err)
		}
	}
	keys.Wipe()
	if keys.ToVault != (ChannelKey{}) {
		t.Fatal("Wipe left key bytes")
	}
}

func TestWrapKey(t *testing.T) {
	export := bytes.Repeat([]byte{5}, 64)
	k := bytes.Repeat([]byte{7}, BackupKeySize)
	w, err := WrapKey(rand.Reader, export, []byte("u"), k)
	if err != nil || len(w) < MinWrappedKeySize || len(w) > MaxWrappedKeySize {
		t.Fatalf("wrapped %d bytes: %v", len(w), err)
	}
	if got, err := UnwrapKey(export, []byte("u"), w); err != nil || !bytes.Equal(got, k) {
		t.Fatal(err)
	}
	if _, err := UnwrapKey(bytes.Repeat([]byte{6}, 64), []byte("u"), w); err != ErrUnwrap {
		t.Fatalf("wrong export key: %v", err)
	}
	if _, err := UnwrapKey(export, []byte("v"), w); err != ErrUnwrap {
		t.Fatalf("other user: %v", err)
	}
	if _, err := UnwrapKey(export, []byte("u"), w[:10]); err != ErrUnwrap {
		t.Fatalf("truncated: %v", err)
	}
}
