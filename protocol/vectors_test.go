package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json from the current code")

// vectorFile is testdata/vectors.json: encodings of one example of each
// message and outputs of the key schedule for fixed inputs, so that another
// implementation can check itself against this one (SPEC.md, "Test vectors").
type vectorFile struct {
	Comment   string            `json:"comment"`
	Messages  map[string]string `json:"messages"`
	Schedules map[string]string `json:"key_schedule"`
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func buildVectors(t testing.TB) vectorFile {
	signing := ed25519.NewKeyFromSeed(seq(32, 0x10))
	receipt, err := SignReceipt(signing, &Receipt{Kind: ReceiptAttempt, UserID: []byte("alice"), Generation: 0x8000000000000001,
		Limit: 10, TriesLeft: 9, StoreSequence: 42, RequestHash: RequestHash(seq(KE1Size, 1)), AttemptsTotal: 12, SuccessesTotal: 3})
	if err != nil {
		t.Fatal(err)
	}
	identity, err := SignIdentity(ed25519.NewKeyFromSeed(seq(32, 0x20)), &Identity{Version: Version,
		SigningKey: signing.Public().(ed25519.PublicKey), AKEKey: seq(32, 0x30), HPKEKey: seq(32, 0x40),
		FirmwareHash: seq(32, 0x50), MaxLimit: 10, Insecure: true, Name: "example"})
	if err != nil {
		t.Fatal(err)
	}
	status, err := SignStatus(signing, &Status{Version: Version, StoreSequence: 42, AnchorWrites: 43, Insecure: true,
		PendingLogins: 1, OpenSessions: 2, Nonce: seq(StatusNonceSize, 0xa0)})
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string]struct {
		typ  Type
		body Message
	}{
		"identity-request":     {TypeIdentity, &Empty{}},
		"identity-reply":       {TypeIdentity, &identity},
		"register-start":       {TypeRegisterStart, &RegisterStart{UserID: []byte("alice"), Enc: seq(32, 1), Sealed: seq(70, 2)}},
		"register-start-reply": {TypeRegisterStart, &RegisterStartReply{Handle: seq(16, 3), Sealed: seq(100, 4), ResponseNonce: seq(32, 0x20)}},
		"register-finish":      {TypeRegisterFinish, &RegisterFinish{Handle: seq(16, 3), Sealed: seq(300, 5)}},
		"login-start":          {TypeLoginStart, &LoginStart{UserID: []byte("alice"), KE1: seq(KE1Size, 1)}},
		"login-start-reply":    {TypeLoginStart, &LoginStartReply{Handle: seq(16, 6), KE2: seq(KE2Size, 7), Receipt: receipt}},
		"login-finish":         {TypeLoginFinish, &LoginFinish{Handle: seq(16, 6), KE3: seq(KE3Size, 8)}},
		"session":              {TypeSession, &Session{Handle: seq(16, 6), Seq: 1, Sealed: seq(40, 9)}},
		"session-reply":        {TypeSession, &SessionReply{Seq: 1, Sealed: seq(200, 10)}},
		"status-request":       {TypeStatus, &StatusRequest{Nonce: seq(StatusNonceSize, 0xa0)}},
		"status-reply":         {TypeStatus, &status},
		"error":                {TypeError, &Error{Code: CodeBusy, Message: "too many operations in flight"}},
	}
	v := vectorFile{
		Comment:   "Coffer protocol v1 vectors: envelopes in hex (core deterministic CBOR) and key-schedule outputs for fixed inputs; see SPEC.md.",
		Messages:  map[string]string{},
		Schedules: map[string]string{},
	}
	for name, m := range msgs {
		b, err := Encode(m.typ, m.body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v.Messages[name] = hex.EncodeToString(b)
	}
	keys, err := DeriveSessionKeys(seq(64, 0x60), seq(16, 6))
	if err != nil {
		t.Fatal(err)
	}
	v.Schedules["session_opaque_key"] = hex.EncodeToString(seq(64, 0x60))
	v.Schedules["session_handle"] = hex.EncodeToString(seq(16, 6))
	v.Schedules["session_to_vault"] = hex.EncodeToString(keys.ToVault[:])
	v.Schedules["session_to_client"] = hex.EncodeToString(keys.ToClient[:])
	v.Schedules["seal_seq1_aad_handle_plaintext_hello"] = hex.EncodeToString(Seal(&keys.ToVault, 1, seq(16, 6), []byte("hello")))
	wrapped, err := WrapKey(bytes.NewReader(seq(24, 0x70)), seq(64, 0x80), []byte("alice"), seq(32, 0x90))
	if err != nil {
		t.Fatal(err)
	}
	v.Schedules["wrap_export_key"] = hex.EncodeToString(seq(64, 0x80))
	v.Schedules["wrap_nonce"] = hex.EncodeToString(seq(24, 0x70))
	v.Schedules["wrap_backup_key"] = hex.EncodeToString(seq(32, 0x90))
	v.Schedules["wrap_user_id"] = hex.EncodeToString([]byte("alice"))
	v.Schedules["wrapped"] = hex.EncodeToString(wrapped)
	v.Schedules["record_hash"] = hex.EncodeToString(RecordHash(seq(RecordSize, 1), wrapped, 10))
	return v
}

func TestVectors(t *testing.T) {
	got := buildVectors(t)
	if *updateVectors {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile("testdata/vectors.json", append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var want vectorFile
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for name, h := range want.Messages {
		if got.Messages[name] != h {
			t.Errorf("message %s encodes differently from the vector", name)
		}
		raw, _ := hex.DecodeString(h)
		if _, err := PeekType(raw); err != nil {
			t.Errorf("vector %s does not decode: %v", name, err)
		}
	}
	for name, h := range want.Schedules {
		if got.Schedules[name] != h {
			t.Errorf("key schedule %s differs from the vector", name)
		}
	}
	if len(want.Messages) != len(got.Messages) || len(want.Schedules) != len(got.Schedules) {
		t.Error("the vector file and the code list different vectors")
	}
}

// testVectors returns the vector messages as fuzz seeds.
func testVectors(t testing.TB) [][]byte {
	var out [][]byte
	for _, h := range buildVectors(t).Messages {
		b, _ := hex.DecodeString(h)
		out = append(out, b)
	}
	return out
}
