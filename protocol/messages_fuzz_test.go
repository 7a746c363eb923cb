package protocol

import (
	"bytes"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
)

// messageTypes lists a fresh value of every message a peer decodes.
func messageTypes() map[string]func() Message {
	return map[string]func() Message{
		"envelope":          func() Message { return &Envelope{} },
		"empty":             func() Message { return &Empty{} },
		"error":             func() Message { return &Error{} },
		"register-start":    func() Message { return &RegisterStart{} },
		"register-inner":    func() Message { return &RegisterStartInner{} },
		"register-reply":    func() Message { return &RegisterStartReply{} },
		"register-rinner":   func() Message { return &RegisterStartReplyInner{} },
		"register-finish":   func() Message { return &RegisterFinish{} },
		"register-finner":   func() Message { return &RegisterFinishInner{} },
		"sealed-reply":      func() Message { return &SealedReply{} },
		"login-start":       func() Message { return &LoginStart{} },
		"login-start-reply": func() Message { return &LoginStartReply{} },
		"login-finish":      func() Message { return &LoginFinish{} },
		"session":           func() Message { return &Session{} },
		"session-reply":     func() Message { return &SessionReply{} },
		"session-command":   func() Message { return &SessionCommand{} },
		"session-rinner":    func() Message { return &SessionReplyInner{} },
		"status-request":    func() Message { return &StatusRequest{} },
		"status-reply":      func() Message { return &StatusReply{} },
		"status":            func() Message { return &Status{} },
		"user-status-req":   func() Message { return &UserStatusRequest{} },
		"user-status-reply": func() Message { return &UserStatusReply{} },
		"user-status":       func() Message { return &UserStatus{} },
		"receipt":           func() Message { return &Receipt{} },
		"signed-receipt":    func() Message { return &SignedReceipt{} },
		"identity":          func() Message { return &Identity{} },
		"signed-identity":   func() Message { return &SignedIdentity{} },
		// Realms (REALMS.md, section 7).
		"realm-request":         func() Message { return &RealmRequest{} },
		"realm-inner":           func() Message { return &RealmInner{} },
		"realm-reply":           func() Message { return &RealmReply{} },
		"realm-challenge":       func() Message { return &RealmChallenge{} },
		"realm-evaluate":        func() Message { return &RealmEvaluate{} },
		"realm-unlock":          func() Message { return &RealmUnlock{} },
		"realm-register":        func() Message { return &RealmRegister{} },
		"version-material":      func() Message { return &VersionMaterial{} },
		"realm-receipt-reply":   func() Message { return &RealmReceiptReply{} },
		"realm-challenge-reply": func() Message { return &RealmChallengeReply{} },
		"realm-evaluate-reply":  func() Message { return &RealmEvaluateReply{} },
		"realm-command":         func() Message { return &RealmCommand{} },
		"realm-receipt":         func() Message { return &RealmReceipt{} },
		"signed-realm-receipt":  func() Message { return &SignedRealmReceipt{} },
		"manifest":              func() Message { return &Manifest{} },
		"manifest-body":         func() Message { return &ManifestBody{} },
	}
}

// FuzzMessages decodes arbitrary bytes as every message type. Whatever
// decodes must be in core deterministic encoding (by walkCanonical, which
// does not use the CBOR library), validate, re-encode to exactly the bytes
// it came from, and decode again to the same encoding: a peer can never be handed a message that this package
// would refuse to send, or that means two things. And checkCanonical must
// accept every well-formed item walkCanonical judges canonical.
func FuzzMessages(f *testing.F) {
	ok, broken, _ := messageVectors(f)
	for _, v := range ok {
		f.Add(v)
	}
	for _, v := range broken {
		if len(v) <= MaxMessageSize {
			f.Add(v)
		}
	}
	for _, v := range realmSeeds(f) {
		f.Add(v)
	}
	// The independent realm vectors: every messages/ case's bytes and its
	// encoded inners (testdata/realms, written by gen_vectors.py there).
	for _, c := range vectorfile.Load(f, "testdata/realms") {
		if c.Group() != "messages" {
			continue
		}
		f.Add(c.Data)
		for _, h := range []string{"inner", "command"} {
			if c.Has(h) {
				f.Add(c.Hex(f, h))
			}
		}
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var item any
		if walkCanonical(b) == nil && decMode.Unmarshal(b, &item) == nil {
			if err := checkCanonical(b); err != nil {
				t.Fatalf("a canonical item is refused: %v", err)
			}
		}
		for name, mk := range messageTypes() {
			m := mk()
			if err := Unmarshal(b, m); err != nil {
				continue
			}
			if err := walkCanonical(b); err != nil {
				t.Fatalf("%s decoded from a non-canonical encoding: %v", name, err)
			}
			again, err := Marshal(m)
			if err != nil {
				t.Fatalf("%s decoded but does not re-encode: %v", name, err)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("%s decoded from bytes other than its one encoding:\n%x\n%x", name, b, again)
			}
			m2 := mk()
			if err := Unmarshal(again, m2); err != nil {
				t.Fatalf("%s re-encoding does not decode: %v", name, err)
			}
			third, _ := Marshal(m2)
			if !bytes.Equal(again, third) {
				t.Fatalf("%s encoding is not stable", name)
			}
		}
	})
}
