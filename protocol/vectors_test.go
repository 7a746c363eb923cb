package protocol

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
)

// The protocol's test vectors are testdata/vectors: one file per case, with
// the outcome a receiver must reach, written by gen_vectors.py beside them
// (cbor2 and Python's cryptography, not this package). SPEC.md, "Test
// vectors", and testdata/vectors/README.md describe them.
const vectorDir = "testdata/vectors"

// errSequence is a session message whose sequence number is not the one
// the receiver expects (SPEC.md, "Session": code sequence).
var errSequence = errors.New("session sequence out of order")

// errUnknownHandle is a registration finish for another handle than the
// vault's pending one.
var errUnknownHandle = errors.New("unknown handle")

// outcome names the result of err as the vector files do.
func outcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, ErrUnsupportedVersion):
		return "unsupported-version"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrOpen), errors.Is(err, ErrUnwrap):
		return "authentication"
	case errors.Is(err, ErrReplayedStatus):
		return "replayed"
	case errors.Is(err, ErrOtherUser):
		return "other-user"
	case errors.Is(err, errSequence):
		return "sequence"
	case errors.Is(err, errUnknownHandle):
		return "unknown-handle"
	}
	return "unexpected error: " + err.Error()
}

// envelopeMessages maps the vector files' message names to their type and
// body: requests and replies share a type.
var envelopeMessages = map[string]struct {
	typ  Type
	body func() Message
}{
	"error":                     {TypeError, func() Message { return &Error{} }},
	"identity-request":          {TypeIdentity, func() Message { return &Empty{} }},
	"identity-reply":            {TypeIdentity, func() Message { return &SignedIdentity{} }},
	"register-start":            {TypeRegisterStart, func() Message { return &RegisterStart{} }},
	"register-start-reply":      {TypeRegisterStart, func() Message { return &RegisterStartReply{} }},
	"register-finish":           {TypeRegisterFinish, func() Message { return &RegisterFinish{} }},
	"register-finish-reply":     {TypeRegisterFinish, func() Message { return &SealedReply{} }},
	"login-start":               {TypeLoginStart, func() Message { return &LoginStart{} }},
	"login-start-reply":         {TypeLoginStart, func() Message { return &LoginStartReply{} }},
	"login-finish":              {TypeLoginFinish, func() Message { return &LoginFinish{} }},
	"login-finish-reply":        {TypeLoginFinish, func() Message { return &SealedReply{} }},
	"session":                   {TypeSession, func() Message { return &Session{} }},
	"session-reply":             {TypeSession, func() Message { return &SessionReply{} }},
	"status-request":            {TypeStatus, func() Message { return &StatusRequest{} }},
	"status-reply":              {TypeStatus, func() Message { return &StatusReply{} }},
	"unsigned-identity-request": {TypeUnsignedIdentity, func() Message { return &Empty{} }},
	"unsigned-identity-reply":   {TypeUnsignedIdentity, func() Message { return &Identity{} }},
	"install-identity":          {TypeInstallIdentity, func() Message { return &SignedIdentity{} }},
	"install-identity-reply":    {TypeInstallIdentity, func() Message { return &Empty{} }},
	"user-status-request":       {TypeUserStatus, func() Message { return &UserStatusRequest{} }},
	"user-status-reply":         {TypeUserStatus, func() Message { return &UserStatusReply{} }},
}

// bodyMessages maps the names of signed or sealed contents to their type.
var bodyMessages = map[string]func() Message{
	"receipt":               func() Message { return &Receipt{} },
	"status":                func() Message { return &Status{} },
	"user-status":           func() Message { return &UserStatus{} },
	"identity":              func() Message { return &Identity{} },
	"session-command":       func() Message { return &SessionCommand{} },
	"session-reply-inner":   func() Message { return &SessionReplyInner{} },
	"register-finish-inner": func() Message { return &RegisterFinishInner{} },
}

// TestProtocolVectors walks every case and checks that this package reaches
// exactly the outcome the case names; for a success it also checks the
// other direction: encoding what was decoded gives back the case's bytes.
func TestProtocolVectors(t *testing.T) {
	cases := vectorfile.Load(t, vectorDir)
	groups := map[string]func(*testing.T, *vectorfile.Case) (string, error){
		"messages":     checkMessageVector,
		"bodies":       checkBodyVector,
		"signed":       checkSignedVector,
		"registration": checkRegistrationVector,
		"session":      checkSessionVector,
		"wrap":         checkWrapVector,
		"hashes":       checkHashVector,
	}
	seen := map[string]map[string]int{}
	for i := range cases {
		c := &cases[i]
		check, ok := groups[c.Group()]
		if !ok {
			t.Errorf("%s: unknown group", c.Path)
			continue
		}
		t.Run(c.Path, func(t *testing.T) {
			got, err := check(t, c)
			if got != c.Expect {
				t.Errorf("got %s (%v), the vector expects %s: %v", got, err, c.Expect, c.Comments)
			}
		})
		if seen[c.Group()] == nil {
			seen[c.Group()] = map[string]int{}
		}
		seen[c.Group()][c.Expect]++
	}
	// Every group has cases that must pass and cases that must fail.
	for g := range groups {
		if seen[g]["success"] == 0 || len(seen[g]) < 2 && g != "hashes" {
			t.Errorf("group %s has outcomes %v: each needs a success and a failure", g, seen[g])
		}
	}
}

// reencodes reports whether m encodes to exactly want.
func reencodes(m Message, want []byte) error {
	got, err := Marshal(m)
	if err != nil {
		return fmt.Errorf("decoded, but does not encode again: %v", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("decoded, but encodes again as %x", got)
	}
	return nil
}

func checkMessageVector(t *testing.T, c *vectorfile.Case) (string, error) {
	spec, ok := envelopeMessages[c.Header["message"]]
	if !ok {
		t.Fatalf("unknown message %q", c.Header["message"])
	}
	body := spec.body()
	var err error
	if spec.typ == TypeError {
		// Decode returns an error reply as a Go error; read it as a value.
		var env Envelope
		if err = Unmarshal(c.Data, &env); err == nil {
			if env.Type != TypeError {
				err = fmt.Errorf("%w: not an error reply", ErrMalformed)
			} else {
				err = Unmarshal(env.Body, body)
			}
		}
	} else {
		err = Decode(c.Data, spec.typ, body)
	}
	if err != nil {
		return outcome(err), err
	}
	again, err := Encode(spec.typ, body)
	if err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("decoded, but encodes again as %x (%v)", again, err)
	}
	if typ, err := PeekType(c.Data); err != nil || typ != spec.typ {
		t.Errorf("PeekType: %v %v", typ, err)
	}
	return "success", nil
}

func checkBodyVector(t *testing.T, c *vectorfile.Case) (string, error) {
	mk, ok := bodyMessages[c.Header["body"]]
	if !ok {
		t.Fatalf("unknown body %q", c.Header["body"])
	}
	m := mk()
	if err := Unmarshal(c.Data, m); err != nil {
		return outcome(err), err
	}
	if err := reencodes(m, c.Data); err != nil {
		t.Error(err)
	}
	return "success", nil
}

func checkSignedVector(t *testing.T, c *vectorfile.Case) (string, error) {
	key := ed25519.PublicKey(c.Hex(t, "public-key"))
	var err error
	var m Message
	switch c.Header["signed"] {
	case "receipt":
		var s SignedReceipt
		m = &s
		if err = Unmarshal(c.Data, &s); err == nil {
			_, err = s.Verify(key)
		}
		if err == nil && c.Has("receipt-hash") && !bytes.Equal(ReceiptHash(&s), c.Hex(t, "receipt-hash")) {
			t.Errorf("receipt hash %x", ReceiptHash(&s))
		}
	case "identity":
		var s SignedIdentity
		m = &s
		if err = Unmarshal(c.Data, &s); err == nil {
			_, err = s.Verify(key)
		}
	case "status":
		var s StatusReply
		m = &s
		if err = Unmarshal(c.Data, &s); err == nil {
			_, err = s.Verify(key, c.Hex(t, "nonce"))
		}
	case "user-status":
		var s UserStatusReply
		m = &s
		if err = Unmarshal(c.Data, &s); err == nil {
			_, err = s.Verify(key, &UserStatusRequest{UserID: c.Hex(t, "user-id"), Nonce: c.Hex(t, "nonce")})
		}
	default:
		t.Fatalf("unknown signed structure %q", c.Header["signed"])
	}
	if err == nil {
		if rerr := reencodes(m, c.Data); rerr != nil {
			t.Error(rerr)
		}
	}
	return outcome(err), err
}

// openVectorStart is the vault opening the case's RegisterStart (the
// header's, or the case's own bytes): the secret both ends share.
func openVectorStart(t *testing.T, c *vectorfile.Case, raw []byte) (*RegisterStartInner, *RegistrationSecret, error) {
	key, err := HPKEKeyFromBytes(c.Hex(t, "vault-hpke-private-key"))
	if err != nil {
		t.Fatal(err)
	}
	var start RegisterStart
	if err := Decode(raw, TypeRegisterStart, &start); err != nil {
		return nil, nil, err
	}
	return OpenRegistration(key, &start)
}

func checkRegistrationVector(t *testing.T, c *vectorfile.Case) (string, error) {
	step := c.Header["registration"]
	if step == "start" {
		inner, secret, err := openVectorStart(t, c, c.Data)
		if err != nil {
			return outcome(err), err
		}
		if err := reencodes(inner, c.Hex(t, "plaintext")); err != nil {
			t.Error(err)
		}
		if got := secret.secret[:]; !bytes.Equal(got, c.Hex(t, "exported-secret")) {
			t.Errorf("exported secret %x", got)
		}
		return "success", nil
	}
	// The other steps need the run's secret: that of the header's start,
	// which must open.
	_, secret, err := openVectorStart(t, c, c.Hex(t, "register-start"))
	if err != nil {
		t.Fatalf("the header's register-start does not open: %v", err)
	}
	var plain Message
	switch step {
	case "start-reply": // the client
		var reply RegisterStartReply
		if err := Decode(c.Data, TypeRegisterStart, &reply); err != nil {
			return outcome(err), err
		}
		keys, err := secret.Keys(reply.ResponseNonce)
		if err != nil {
			return outcome(err), err
		}
		if c.Has("start-reply-key") {
			for _, k := range []struct {
				name string
				key  *OneTimeKey
			}{{"start-reply", &keys.StartReply}, {"finish", &keys.Finish}, {"finish-reply", &keys.FinishReply}} {
				if !bytes.Equal(k.key.key[:], c.Hex(t, k.name+"-key")) || !bytes.Equal(k.key.nonce[:], c.Hex(t, k.name+"-nonce")) {
					t.Errorf("%s key %x nonce %x", k.name, k.key.key, k.key.nonce)
				}
			}
		}
		var inner RegisterStartReplyInner
		plain = &inner
		err = keys.StartReply.OpenMessage(reply.Handle, reply.Sealed, &inner)
		if err != nil {
			return outcome(err), err
		}
	case "finish": // the vault, which drew response-nonce for handle
		keys, err := secret.Keys(c.Hex(t, "response-nonce"))
		if err != nil {
			t.Fatal(err)
		}
		var finish RegisterFinish
		if err := Decode(c.Data, TypeRegisterFinish, &finish); err != nil {
			return outcome(err), err
		}
		if !bytes.Equal(finish.Handle, c.Hex(t, "handle")) {
			return outcome(errUnknownHandle), errUnknownHandle
		}
		var inner RegisterFinishInner
		plain = &inner
		if err := keys.Finish.OpenMessage(finish.Handle, finish.Sealed, &inner); err != nil {
			return outcome(err), err
		}
	case "finish-reply": // the client, which sent its finish under handle
		keys, err := secret.Keys(c.Hex(t, "response-nonce"))
		if err != nil {
			t.Fatal(err)
		}
		var reply SealedReply
		if err := Decode(c.Data, TypeRegisterFinish, &reply); err != nil {
			return outcome(err), err
		}
		var receipt SignedReceipt
		plain = &receipt
		if err := keys.FinishReply.OpenMessage(c.Hex(t, "handle"), reply.Sealed, &receipt); err != nil {
			return outcome(err), err
		}
	default:
		t.Fatalf("unknown registration step %q", step)
	}
	if err := reencodes(plain, c.Hex(t, "plaintext")); err != nil {
		t.Error(err)
	}
	return "success", nil
}

func checkSessionVector(t *testing.T, c *vectorfile.Case) (string, error) {
	handle := c.Hex(t, "handle")
	keys, err := DeriveSessionKeys(c.Hex(t, "opaque-session-key"), handle)
	if err != nil {
		t.Fatal(err)
	}
	if c.Has("to-vault-key") && (!bytes.Equal(keys.ToVault[:], c.Hex(t, "to-vault-key")) ||
		!bytes.Equal(keys.ToClient[:], c.Hex(t, "to-client-key"))) {
		t.Errorf("session keys %x %x", keys.ToVault, keys.ToClient)
	}
	expected := c.Uint(t, "expected-seq")
	var plain Message
	switch c.Header["session"] {
	case "to-vault":
		var m Session
		if err := Decode(c.Data, TypeSession, &m); err != nil {
			return outcome(err), err
		}
		if m.Seq != expected {
			return outcome(errSequence), errSequence
		}
		var cmd SessionCommand
		plain = &cmd
		if err := OpenMessage(&keys.ToVault, m.Seq, m.Handle, m.Sealed, &cmd); err != nil {
			return outcome(err), err
		}
	case "to-client":
		var m SessionReply
		if err := Decode(c.Data, TypeSession, &m); err != nil {
			return outcome(err), err
		}
		if m.Seq != expected {
			return outcome(errSequence), errSequence
		}
		var inner SessionReplyInner
		plain = &inner
		if err := OpenMessage(&keys.ToClient, m.Seq, handle, m.Sealed, &inner); err != nil {
			return outcome(err), err
		}
	case "login-reply":
		var m SealedReply
		if err := Decode(c.Data, TypeLoginFinish, &m); err != nil {
			return outcome(err), err
		}
		var inner SessionReplyInner
		plain = &inner
		if err := OpenMessage(&keys.ToClient, expected, handle, m.Sealed, &inner); err != nil {
			return outcome(err), err
		}
	default:
		t.Fatalf("unknown session direction %q", c.Header["session"])
	}
	if err := reencodes(plain, c.Hex(t, "plaintext")); err != nil {
		t.Error(err)
	}
	return "success", nil
}

func checkWrapVector(t *testing.T, c *vectorfile.Case) (string, error) {
	export, user := c.Hex(t, "export-key"), c.Hex(t, "user-id")
	k, err := UnwrapKey(export, user, c.Data)
	if err != nil {
		return outcome(err), err
	}
	if !bytes.Equal(k, c.Hex(t, "backup-key")) {
		t.Errorf("unwrapped %x", k)
	}
	// And back: the same nonce wraps K into the same bytes.
	again, err := WrapKey(bytes.NewReader(c.Data[:24]), export, user, k)
	if err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("wraps again as %x (%v)", again, err)
	}
	return "success", nil
}

func checkHashVector(t *testing.T, c *vectorfile.Case) (string, error) {
	var got []byte
	switch c.Header["hash"] {
	case "record":
		got = RecordHash(c.Hex(t, "record"), c.Hex(t, "wrapped"), uint(c.Uint(t, "limit")))
	case "request":
		got = RequestHash(c.Hex(t, "ke1"))
	default:
		t.Fatalf("unknown hash %q", c.Header["hash"])
	}
	if !bytes.Equal(got, c.Data) {
		return "different hash " + hex.EncodeToString(got), nil
	}
	return "success", nil
}

// messageVectors returns the bytes of every message case with its rule
// (SPEC.md, "Conventions"; empty for a success): fuzz seeds, and the cases
// the independent canonical check must agree on.
func messageVectors(t testing.TB) (ok [][]byte, broken map[string][]byte, rules map[string]string) {
	broken, rules = map[string][]byte{}, map[string]string{}
	for _, c := range vectorfile.Load(t, vectorDir) {
		if c.Group() != "messages" {
			continue
		}
		if c.Expect == "success" {
			ok = append(ok, c.Data)
			continue
		}
		broken[c.Path] = c.Data
		rules[c.Path] = c.Header["rule"]
	}
	return ok, broken, rules
}
