package vault

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/fxamacker/cbor/v2"
)

// Every malformed request gets a clear error reply and changes nothing.
func TestBadRequestsGetClearErrors(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.client("walt")
	key := register(t, c, "pw", 5)

	det, _ := cbor.CoreDetEncOptions().EncMode() // so that each case fails for its own reason
	encode := func(t protocol.Type, body any) []byte {
		b, _ := det.Marshal(body)
		env, _ := det.Marshal(map[int]any{1: 1, 2: uint(t), 3: cbor.RawMessage(b)})
		return env
	}
	ke1 := validKE1(t)
	cases := []struct {
		name string
		req  []byte
		code protocol.Code
	}{
		{"empty", nil, protocol.CodeMalformed},
		{"garbage", []byte("\xff\x00garbage"), protocol.CodeMalformed},
		{"wrong version", func() []byte {
			b, _ := det.Marshal(map[int]any{1: 2, 2: 4, 3: cbor.RawMessage{0xa0}})
			return b
		}(), protocol.CodeUnsupportedVersion},
		{"unknown type", encode(99, map[int]any{}), protocol.CodeMalformed},
		{"reply type as request", encode(protocol.TypeError, map[int]any{1: 1}), protocol.CodeMalformed},
		{"truncated", encode(protocol.TypeLoginStart, map[int]any{1: []byte("walt"), 2: ke1})[:20], protocol.CodeMalformed},
		{"trailing bytes", append(encode(protocol.TypeLoginStart, map[int]any{1: []byte("walt"), 2: ke1}), 0), protocol.CodeMalformed},
		{"short ke1", encode(protocol.TypeLoginStart, map[int]any{1: []byte("walt"), 2: ke1[:95]}), protocol.CodeMalformed},
		{"long ke1", encode(protocol.TypeLoginStart, map[int]any{1: []byte("walt"), 2: append(ke1, 0)}), protocol.CodeMalformed},
		{"identity element ke1", encode(protocol.TypeLoginStart, map[int]any{1: []byte("walt"), 2: make([]byte, 96)}), protocol.CodeMalformed},
		{"unknown field", encode(protocol.TypeLoginStart, map[int]any{1: []byte("walt"), 2: ke1, 9: 1}), protocol.CodeMalformed},
		{"missing user", encode(protocol.TypeLoginStart, map[int]any{2: ke1}), protocol.CodeMalformed},
		{"long user", encode(protocol.TypeLoginStart, map[int]any{1: bytes.Repeat([]byte{1}, 65), 2: ke1}), protocol.CodeMalformed},
		{"text not bytes", encode(protocol.TypeLoginStart, map[int]any{1: "walt", 2: ke1}), protocol.CodeMalformed},
		{"duplicate key", append([]byte{0xa3, 0x01, 0x01, 0x02, 0x04, 0x02, 0x04}, 0xa0), protocol.CodeMalformed},
		{"indefinite map", []byte{0xbf, 0x01, 0x01, 0x02, 0x04, 0x03, 0xa0, 0xff}, protocol.CodeMalformed},
		{"tagged", append([]byte{0xc1}, encode(protocol.TypeStatus, map[int]any{})...), protocol.CodeMalformed},
		{"status without nonce", encode(protocol.TypeStatus, map[int]any{}), protocol.CodeMalformed},
		{"status short nonce", encode(protocol.TypeStatus, map[int]any{1: make([]byte, 31)}), protocol.CodeMalformed},
		{"short handle", encode(protocol.TypeLoginFinish, map[int]any{1: make([]byte, 15), 2: make([]byte, 64)}), protocol.CodeMalformed},
		{"session seq 0", encode(protocol.TypeSession, map[int]any{1: make([]byte, 16), 2: 0, 3: make([]byte, 32)}), protocol.CodeMalformed},
		{"register short enc", encode(protocol.TypeRegisterStart, map[int]any{1: []byte("x"), 2: make([]byte, 31), 3: make([]byte, 64)}), protocol.CodeMalformed},
		{"register finish unknown", encode(protocol.TypeRegisterFinish, map[int]any{1: make([]byte, 16), 2: make([]byte, 64)}), protocol.CodeUnknownHandle},
		{"oversize", bytes.Repeat([]byte{0}, protocol.MaxMessageSize+1), protocol.CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply := h.v.handle(context.Background(), tc.req)
			var e protocol.Error
			var env protocol.Envelope
			if err := protocol.Unmarshal(reply, &env); err != nil || env.Type != protocol.TypeError {
				t.Fatalf("reply is not an error envelope: %v", err)
			}
			if err := protocol.Unmarshal(env.Body, &e); err != nil {
				t.Fatal(err)
			}
			if e.Code != tc.code {
				t.Fatalf("code %d (%s: %q), want %d", e.Code, e.Code, e.Message, tc.code)
			}
		})
	}
	// Nothing was counted or lost.
	if r := h.committedRecord("walt"); r.counter() != 0 {
		t.Fatalf("bad requests moved the counter to %d", r.counter())
	}
	mustLogin(t, c, "pw", key)
}

func TestIdentityAndStatus(t *testing.T) {
	h := newHarness(t, Options{Insecure: true, Name: "test vault"})
	req, _ := protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	wantCode(t, protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeIdentity, &protocol.SignedIdentity{}), protocol.CodeNotProvisioned)

	prov := newProvisioningKey(t)
	signed, err := protocol.SignIdentity(prov, h.v.Identity())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.v.InstallIdentity(context.Background(), signed); err != nil {
		t.Fatal(err)
	}
	h.boot() // the bundle is durable
	var got protocol.SignedIdentity
	if err := protocol.Decode(h.v.handle(context.Background(), req), protocol.TypeIdentity, &got); err != nil {
		t.Fatal(err)
	}
	id, err := got.Verify(prov.Public().(ed25519PublicKey))
	if err != nil || !id.Insecure || id.Name != "test vault" || id.MaxLimit != protocol.DefaultLimit {
		t.Fatalf("identity %+v, %v", id, err)
	}
	// A bundle for another vault is refused.
	other := newHarness(t, Options{})
	foreign, _ := protocol.SignIdentity(prov, other.v.Identity())
	if err := h.v.InstallIdentity(context.Background(), foreign); err == nil {
		t.Fatal("installed another vault's bundle")
	}

	challenge := protocol.NewStatusRequest()
	sreq, _ := protocol.Encode(protocol.TypeStatus, challenge)
	var st protocol.StatusReply
	if err := protocol.Decode(h.v.handle(context.Background(), sreq), protocol.TypeStatus, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Verify(id.SigningKey, protocol.NewStatusRequest().Nonce); !errors.Is(err, protocol.ErrReplayedStatus) {
		t.Fatalf("a status verified against another request's nonce: %v", err)
	}
	status, err := st.Verify(id.SigningKey, challenge.Nonce)
	if err != nil || !status.Insecure || status.StoreSequence == 0 {
		t.Fatalf("status %+v, %v", status, err)
	}
}

func TestNewRefusesAnEmptyStoreUnlessCreating(t *testing.T) {
	if _, err := New(context.Background(), newEmptyStore(), Options{}); err != ErrNotInitialised {
		t.Fatalf("empty store without Create: %v", err)
	}
	h := newHarness(t, Options{})
	want := h.v.Identity()
	v, err := New(context.Background(), h.store, Options{})
	if err != nil {
		t.Fatalf("reopening an initialised store: %v", err)
	}
	if got := v.Identity(); string(got.SigningKey) != string(want.SigningKey) || string(got.AKEKey) != string(want.AKEKey) {
		t.Fatal("reopening the store gave the vault other keys")
	}
}

// A provisioning station reads the unsigned identity over the protocol, signs
// it offline and installs it back; a bundle for another vault is refused.
func TestProvisioningOverTheProtocol(t *testing.T) {
	h := newHarness(t, Options{Name: "device-7"})
	call := func(typ protocol.Type, req, reply protocol.Message) error {
		b, err := protocol.Encode(typ, req)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Decode(h.v.handle(context.Background(), b), typ, reply)
	}
	var id protocol.Identity
	if err := call(protocol.TypeUnsignedIdentity, &protocol.Empty{}, &id); err != nil || id.Name != "device-7" {
		t.Fatalf("unsigned identity: %+v %v", id, err)
	}
	prov := newProvisioningKey(t)
	foreign, _ := protocol.SignIdentity(prov, newHarness(t, Options{}).v.Identity())
	wantCode(t, call(protocol.TypeInstallIdentity, &foreign, &protocol.Empty{}), protocol.CodeMalformed)
	signed, _ := protocol.SignIdentity(prov, &id)
	if err := call(protocol.TypeInstallIdentity, &signed, &protocol.Empty{}); err != nil {
		t.Fatal(err)
	}
	var got protocol.SignedIdentity
	if err := call(protocol.TypeIdentity, &protocol.Empty{}, &got); err != nil {
		t.Fatal(err)
	}
	if _, err := got.Verify(prov.Public().(ed25519PublicKey)); err != nil {
		t.Fatal(err)
	}
}
