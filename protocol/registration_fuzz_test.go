package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// FuzzRegistrationReply plays the client receiving whatever the host sends
// as a RegisterStartReply, with the secret of the vector run
// (testdata/registration): nothing panics, and a reply opens only if it is
// exactly what the vault's key for its response nonce seals, so the host
// can neither alter nor splice one.
func FuzzRegistrationReply(f *testing.F) {
	raw, err := os.ReadFile("testdata/registration/vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var v registrationVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		f.Fatal(err)
	}
	enc, _ := hex.DecodeString(v.Schedule.Enc)
	secret := &RegistrationSecret{enc: enc}
	s, _ := hex.DecodeString(v.Schedule.Secret)
	copy(secret.secret[:], s)
	for _, m := range []string{v.Messages.RegisterStartReply, v.Messages.RegisterFinishReply, v.Messages.RegisterStart} {
		b, _ := hex.DecodeString(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var reply RegisterStartReply
		if err := Decode(b, TypeRegisterStart, &reply); err != nil {
			return
		}
		keys, err := secret.Keys(reply.ResponseNonce)
		if err != nil {
			t.Fatalf("a reply that validated has no keys: %v", err)
		}
		resealer := keys
		var inner RegisterStartReplyInner
		if err := keys.StartReply.OpenMessage(reply.Handle, reply.Sealed, &inner); err != nil {
			return
		}
		again, err := resealer.StartReply.SealMessage(reply.Handle, &inner)
		if err != nil || !bytes.Equal(again, reply.Sealed) {
			t.Fatalf("a reply opened that its key does not seal: %v", err)
		}
	})
}
