package opaque

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// badElements are 32-byte strings that are not acceptable encodings of a
// ristretto255 element: the identity, encodings of field values >= p,
// negative field values, the top bit set, and values that decode to no
// point (RFC 9496 section 4.3.1 rejects all of these).
func badElements(t testing.TB) map[string][]byte {
	t.Helper()
	dec := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("bad test constant %q", s)
		}
		return b
	}
	gen := encodeElement(g.Generator())
	highBit := bytes.Clone(gen)
	highBit[31] |= 0x80
	return map[string][]byte{
		"identity":                 make([]byte, 32),
		"p (non-canonical zero)":   dec("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"p+1 (non-canonical one)":  dec("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"2^255-1":                  dec(strings.Repeat("ff", 31) + "7f"),
		"all ones":                 dec(strings.Repeat("ff", 32)),
		"negative s = 1":           dec("0100000000000000000000000000000000000000000000000000000000000000"),
		"negative s = 3":           dec("0300000000000000000000000000000000000000000000000000000000000000"),
		"generator with top bit":   highBit,
		"not on the curve (s = 2)": nonSquareEncoding(t),
	}
}

// nonSquareEncoding finds a small even s that decodes to no point, so the
// test does not depend on a remembered constant.
func nonSquareEncoding(t testing.TB) []byte {
	t.Helper()
	for s := 2; s < 512; s += 2 {
		b := make([]byte, 32)
		b[0], b[1] = byte(s), byte(s>>8)
		if e := g.NewElement(); e.UnmarshalBinary(b) != nil {
			return b
		}
	}
	t.Fatal("no invalid even encoding below 512")
	return nil
}

// validElement returns the encoding of a random element.
func validElement(t testing.TB) []byte {
	t.Helper()
	s, err := randomScalar(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return encodeElement(g.NewElement().MulGen(s))
}

// lengthCases are wrong lengths around a correct size n.
func lengthCases(n int) map[string][]byte {
	return map[string][]byte{
		"nil":       nil,
		"empty":     {},
		"one short": make([]byte, n-1),
		"one long":  make([]byte, n+1),
		"double":    make([]byte, 2*n),
	}
}

func TestValidateKE1BadInput(t *testing.T) {
	for name, b := range lengthCases(KE1Size) {
		wantErr(t, ValidateKE1(b), ErrMalformed, "KE1 "+name)
	}
	nonce := make([]byte, NonceSize)
	good := validElement(t)
	if err := ValidateKE1(concat(good, nonce, validElement(t))); err != nil {
		t.Fatalf("valid KE1 rejected: %v", err)
	}
	for name, bad := range badElements(t) {
		wantErr(t, ValidateKE1(concat(bad, nonce, good)), ErrInvalidElement, "KE1 blinded message "+name)
		wantErr(t, ValidateKE1(concat(good, nonce, bad)), ErrInvalidElement, "KE1 client keyshare "+name)
	}
}

func TestCreateRegistrationResponseBadInput(t *testing.T) {
	keys := newTestServerKeys(t)
	key, err := NewOPRFKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range lengthCases(RegistrationRequestSize) {
		_, err := CreateRegistrationResponse(b, keys.Public, key)
		wantErr(t, err, ErrMalformed, "request "+name)
	}
	good := validElement(t)
	for name, bad := range badElements(t) {
		_, err := CreateRegistrationResponse(bad, keys.Public, key)
		wantErr(t, err, ErrInvalidElement, "request "+name)
		_, err = CreateRegistrationResponse(good, [32]byte(bad), key)
		wantErr(t, err, ErrInvalidElement, "server public key "+name)
	}
	for name, k := range badScalars() {
		_, err := CreateRegistrationResponse(good, keys.Public, OPRFKey(k))
		wantErr(t, err, ErrInvalidScalar, "OPRF key "+name)
		mustNotContain(t, err, k[:])
	}
	resp, err := CreateRegistrationResponse(good, keys.Public, key)
	if err != nil || len(resp) != RegistrationResponseSize {
		t.Fatalf("valid request: %d bytes, %v", len(resp), err)
	}
}

// badScalars are 32-byte keys that are not canonical non-zero scalars.
func badScalars() map[string][32]byte {
	var zero, order, max [32]byte
	// The group order l = 2^252 + 27742317777372353535851937790883648493,
	// little-endian; l itself is non-canonical (it reduces to zero).
	copy(order[:], []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10})
	for i := range max {
		max[i] = 0xff
	}
	return map[string][32]byte{"zero": zero, "group order": order, "all ones": max}
}

func TestParseRecordBadInput(t *testing.T) {
	for name, b := range lengthCases(RecordSize) {
		_, err := ParseRecord(b)
		wantErr(t, err, ErrMalformed, "record "+name)
	}
	maskingKey := bytes.Repeat([]byte{1}, HashSize)
	envelope := make([]byte, EnvelopeSize)
	good := concat(validElement(t), maskingKey, envelope)
	rec, err := ParseRecord(good)
	if err != nil {
		t.Fatalf("valid record rejected: %v", err)
	}
	if !bytes.Equal(rec.Bytes(), good) {
		t.Error("record does not round-trip")
	}
	for name, bad := range badElements(t) {
		_, err := ParseRecord(concat(bad, maskingKey, envelope))
		wantErr(t, err, ErrInvalidElement, "record client public key "+name)
	}
	_, err = ParseRecord(concat(validElement(t), make([]byte, HashSize), envelope))
	wantErr(t, err, ErrMalformed, "record with zero masking key")
}

func TestGenerateKE2BadInput(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("ivy"), []byte("pw"))
	_, ke1, err := NewClientLogin(rand.Reader, u.password)
	if err != nil {
		t.Fatal(err)
	}
	call := func(keys ServerKeys, rec Record, key OPRFKey, id, ke1 []byte, ids Identities, context []byte) error {
		ke2, st, err := GenerateKE2(rand.Reader, keys, rec, key, id, ke1, ids, context)
		if err != nil && (ke2 != nil || st != nil) {
			t.Error("GenerateKE2 returned output with an error")
		}
		return err
	}
	if err := call(keys, u.record, u.key, u.id, ke1, u.ids, nil); err != nil {
		t.Fatalf("valid call: %v", err)
	}
	for name, b := range lengthCases(KE1Size) {
		wantErr(t, call(keys, u.record, u.key, u.id, b, u.ids, nil), ErrMalformed, "KE1 "+name)
	}
	for name, bad := range badElements(t) {
		k := bytes.Clone(ke1)
		copy(k, bad)
		wantErr(t, call(keys, u.record, u.key, u.id, k, u.ids, nil), ErrInvalidElement, "KE1 blinded "+name)
		k = bytes.Clone(ke1)
		copy(k[ElementSize+NonceSize:], bad)
		wantErr(t, call(keys, u.record, u.key, u.id, k, u.ids, nil), ErrInvalidElement, "KE1 keyshare "+name)
		rec := u.record
		copy(rec.ClientPublicKey[:], bad)
		wantErr(t, call(keys, rec, u.key, u.id, ke1, u.ids, nil), ErrInvalidElement, "record client key "+name)
	}
	for name, k := range badScalars() {
		err := call(keys, u.record, OPRFKey(k), u.id, ke1, u.ids, nil)
		wantErr(t, err, ErrInvalidScalar, "OPRF key "+name)
		badKeys := keys
		badKeys.Private = k
		err = call(badKeys, u.record, u.key, u.id, ke1, u.ids, nil)
		wantErr(t, err, ErrInvalidScalar, "server private key "+name)
	}
	zeroMask := u.record
	zeroMask.MaskingKey = [HashSize]byte{}
	wantErr(t, call(keys, zeroMask, u.key, u.id, ke1, u.ids, nil), ErrMalformed, "zero masking key")
	wantErr(t, call(keys, u.record, u.key, nil, ke1, u.ids, nil), ErrInvalidArgument, "empty credential identifier")
	long := make([]byte, maxVectorLength+1)
	wantErr(t, call(keys, u.record, u.key, u.id, ke1, Identities{Client: long}, nil), ErrInvalidArgument, "long client identity")
	wantErr(t, call(keys, u.record, u.key, u.id, ke1, Identities{Server: long}, nil), ErrInvalidArgument, "long server identity")
	wantErr(t, call(keys, u.record, u.key, u.id, ke1, u.ids, long), ErrInvalidArgument, "long context")

	_, _, err = GenerateKE2(nil, keys, u.record, u.key, u.id, ke1, u.ids, nil)
	wantErr(t, err, ErrInvalidArgument, "nil reader")
	_, _, err = GenerateKE2(failingReader{}, keys, u.record, u.key, u.id, ke1, u.ids, nil)
	wantErr(t, err, ErrRandom, "failing reader")
}

func TestKeyFunctionsBadInput(t *testing.T) {
	_, err := NewOPRFKey(nil)
	wantErr(t, err, ErrInvalidArgument, "NewOPRFKey(nil)")
	_, err = NewOPRFKey(failingReader{})
	wantErr(t, err, ErrRandom, "NewOPRFKey(failing)")
	// A stuck source: all zeros is the zero scalar, all ones is never
	// below the group order; both must end in an error, not a loop or a
	// zero key.
	_, err = NewOPRFKey(bytes.NewReader(make([]byte, 32*maxScalarTries)))
	wantErr(t, err, ErrRandom, "NewOPRFKey(zeros)")
	_, err = NewOPRFKey(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32*maxScalarTries)))
	wantErr(t, err, ErrRandom, "NewOPRFKey(ones)")
	_, err = GenerateServerKeys(failingReader{})
	wantErr(t, err, ErrRandom, "GenerateServerKeys(failing)")

	_, err = DeriveOPRFKey(make([]byte, minSeedSize-1), []byte("id"))
	wantErr(t, err, ErrInvalidArgument, "DeriveOPRFKey short seed")
	_, err = DeriveOPRFKey(make([]byte, 64), nil)
	wantErr(t, err, ErrInvalidArgument, "DeriveOPRFKey empty id")
	for _, n := range []int{0, SeedSize - 1, SeedSize + 1} {
		_, err = DeriveServerKeys(make([]byte, n))
		wantErr(t, err, ErrInvalidArgument, "DeriveServerKeys seed length")
	}

	keys := newTestServerKeys(t)
	other := newTestServerKeys(t)
	mismatched := ServerKeys{Private: keys.Private, Public: other.Public}
	err = mismatched.Validate()
	wantErr(t, err, ErrInvalidArgument, "mismatched key pair")
	mustNotContain(t, err, keys.Private[:])
	for name, bad := range badElements(t) {
		err = ServerKeys{Private: keys.Private, Public: [32]byte(bad)}.Validate()
		wantErr(t, err, ErrInvalidElement, "server public key "+name)
	}
}

func TestClientBadInput(t *testing.T) {
	keys := newTestServerKeys(t)
	key, err := NewOPRFKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = NewClientRegistration(failingReader{}, []byte("pw"))
	wantErr(t, err, ErrRandom, "registration with failing reader")
	_, _, err = NewClientLogin(failingReader{}, []byte("pw"))
	wantErr(t, err, ErrRandom, "login with failing reader")
	_, _, err = NewClientLogin(rand.Reader, make([]byte, maxVectorLength+1))
	wantErr(t, err, ErrInvalidArgument, "over-long password")

	newReg := func() (*ClientRegistration, []byte) {
		reg, req, err := NewClientRegistration(rand.Reader, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		return reg, req
	}
	for name, b := range lengthCases(RegistrationResponseSize) {
		reg, _ := newReg()
		_, _, err := reg.Finalize(rand.Reader, b, Identities{}, nil)
		wantErr(t, err, ErrMalformed, "registration response "+name)
	}
	for name, bad := range badElements(t) {
		reg, req := newReg()
		resp, err := CreateRegistrationResponse(req, keys.Public, key)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = reg.Finalize(rand.Reader, concat(bad, resp[ElementSize:]), Identities{}, nil)
		wantErr(t, err, ErrInvalidElement, "evaluated message "+name)
		reg, _ = newReg()
		_, _, err = reg.Finalize(rand.Reader, concat(resp[:ElementSize], bad), Identities{}, nil)
		wantErr(t, err, ErrInvalidElement, "server public key "+name)
	}

	u := register(t, keys, []byte("jack"), []byte("pw"))
	newLogin := func() (*ClientLogin, []byte) {
		c, ke1, err := NewClientLogin(rand.Reader, u.password)
		if err != nil {
			t.Fatal(err)
		}
		ke2, _, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1, u.ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, ke2
	}
	for name, b := range lengthCases(KE2Size) {
		c, _ := newLogin()
		_, _, _, err := c.Finish(b, u.ids, nil, nil)
		wantErr(t, err, ErrMalformed, "KE2 "+name)
	}
	for name, bad := range badElements(t) {
		c, ke2 := newLogin()
		copy(ke2, bad)
		_, _, _, err := c.Finish(ke2, u.ids, nil, nil)
		wantErr(t, err, ErrInvalidElement, "KE2 evaluated message "+name)
		c, ke2 = newLogin()
		copy(ke2[credentialResponseSize+NonceSize:], bad)
		_, _, _, err = c.Finish(ke2, u.ids, nil, nil)
		wantErr(t, err, ErrInvalidElement, "KE2 server keyshare "+name)
	}
}

// TestErrorsCarryNoSecrets checks a few failing paths for secret bytes in
// their messages.
func TestErrorsCarryNoSecrets(t *testing.T) {
	keys := newTestServerKeys(t)
	u := register(t, keys, []byte("kate"), []byte("pw"))
	c, ke1, err := NewClientLogin(rand.Reader, []byte("wrong"))
	if err != nil {
		t.Fatal(err)
	}
	ke2, st, err := GenerateKE2(rand.Reader, keys, u.record, u.key, u.id, ke1, u.ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	expected := bytes.Clone(st.expectedClientMAC[:])
	session := bytes.Clone(st.sessionKey[:])
	_, _, _, clientErr := c.Finish(ke2, u.ids, nil, nil)
	for _, secret := range [][]byte{u.password, []byte("wrong"), u.key[:], keys.Private[:], u.exportKey} {
		mustNotContain(t, clientErr, secret)
	}
	_, serverErr := st.Finish(make([]byte, KE3Size))
	for _, secret := range [][]byte{expected, session, u.key[:], keys.Private[:]} {
		mustNotContain(t, serverErr, secret)
	}
	if !errors.Is(serverErr, ErrAuthentication) {
		t.Errorf("server error %v", serverErr)
	}
}
