package realmkey

// These tests recompute the key schedule of REALMS.md 5.2, 5.4 and 5.6 from
// the document, with RFC 5869 written out on crypto/hmac and every label
// spelled here as a literal: they share no code or constant with
// schedule.go and anchor.go, so a changed label, length, salt or order in
// either fails them.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// rfc5869Extract and rfc5869Expand are HKDF by the RFC's text.
func rfc5869Extract(salt, ikm []byte) []byte {
	if len(salt) == 0 {
		salt = make([]byte, sha512.Size)
	}
	m := hmac.New(sha512.New, salt)
	m.Write(ikm)
	return m.Sum(nil)
}

func rfc5869Expand(prk, info []byte, length int) []byte {
	var out, prev []byte
	for c := byte(1); len(out) < length; c++ {
		m := hmac.New(sha512.New, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{c})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:length]
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func TestScheduleLabelsPinned(t *testing.T) {
	y := seq(64, 1)
	s := seq(32, 0x80)
	versionID := seq(16, 0x20)
	setID := seq(16, 0x40)

	sch, err := NewScheduleStretched(y, s, versionID, setID)
	if err != nil {
		t.Fatal(err)
	}
	prk := rfc5869Extract(nil, cat(y, s))
	ctx := cat(versionID, []byte{16}, setID)
	if want := rfc5869Expand(prk, cat([]byte("coffer/v1 realm check"), ctx), 32); !bytes.Equal(sch.Check[:], want) {
		t.Errorf("check = %x, want %x", sch.Check, want)
	}
	if want := rfc5869Expand(prk, cat([]byte("coffer/v1 realm export"), ctx), 64); !bytes.Equal(sch.Export[:], want) {
		t.Errorf("export = %x, want %x", sch.Export, want)
	}
	for i := 1; i <= 8; i++ {
		r := seq(32, byte(0x10*i))
		want := rfc5869Expand(prk, cat([]byte("coffer/v1 realm unlock"), ctx, []byte{byte(i)}, r), 32)
		if got := sch.UnlockKey(i, r); !bytes.Equal(got, want) {
			t.Errorf("unlock_%d = %x, want %x", i, got, want)
		}
	}
	if !sch.CheckMatches(sch.Check[:]) {
		t.Error("CheckMatches refuses the check value")
	}
	wrong := sch.Check
	wrong[31] ^= 1
	if sch.CheckMatches(wrong[:]) || sch.CheckMatches(sch.Check[:31]) || sch.CheckMatches(nil) {
		t.Error("CheckMatches accepts a wrong check value")
	}

	// A different version, set or password gives different keys.
	other, err := NewScheduleStretched(y, s, seq(16, 0x21), setID)
	if err != nil {
		t.Fatal(err)
	}
	if other.Check == sch.Check || other.Export == sch.Export {
		t.Error("two versions share a check or export key")
	}

	sch.Wipe()
	if sch.Check != [32]byte{} || sch.Export != [64]byte{} {
		t.Error("Wipe left keys")
	}
	defer func() {
		if recover() == nil {
			t.Error("UnlockKey on a wiped schedule did not panic")
		}
	}()
	sch.UnlockKey(1, seq(32, 0))
}

// NewSchedule stretches with Argon2id(y, salt "", t=3, m=64 MiB, p=4, 32).
func TestNewScheduleStretchesWithArgon2id(t *testing.T) {
	y := seq(64, 7)
	versionID, setID := seq(16, 0), seq(16, 100)
	s := argon2.IDKey(y, []byte{}, 3, 65536, 4, 32)
	if got := Stretch(y); !bytes.Equal(got, s) {
		t.Fatalf("Stretch = %x, want %x", got, s)
	}
	sch, err := NewSchedule(y, versionID, setID)
	if err != nil {
		t.Fatal(err)
	}
	prk := rfc5869Extract(nil, cat(y, s))
	if want := rfc5869Expand(prk, cat([]byte("coffer/v1 realm check"), versionID, []byte{16}, setID), 32); !bytes.Equal(sch.Check[:], want) {
		t.Fatalf("NewSchedule check = %x, want %x", sch.Check, want)
	}
}

func TestScheduleRefusesBadLengths(t *testing.T) {
	for name, c := range map[string][4][]byte{
		"short y":          {seq(63, 0), seq(32, 0), seq(16, 0), seq(16, 0)},
		"short s":          {seq(64, 0), seq(31, 0), seq(16, 0), seq(16, 0)},
		"long version id":  {seq(64, 0), seq(32, 0), seq(17, 0), seq(16, 0)},
		"short set id":     {seq(64, 0), seq(32, 0), seq(16, 0), seq(15, 0)},
		"empty version id": {seq(64, 0), seq(32, 0), nil, seq(16, 0)},
	} {
		if _, err := NewScheduleStretched(c[0], c[1], c[2], c[3]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewSchedule(seq(32, 0), seq(16, 0), seq(16, 0)); err == nil {
		t.Error("NewSchedule with a 32-byte y: accepted")
	}
}

func TestTagAndSessionSecretPinned(t *testing.T) {
	unlock := seq(32, 3)
	handle := seq(16, 50)
	nonce := seq(32, 90)
	x := seq(32, 200)

	m := hmac.New(sha256.New, unlock)
	m.Write([]byte("coffer/v1 realm tag\x00"))
	m.Write(handle)
	m.Write(nonce)
	want := m.Sum(nil)
	tag := Tag(unlock, handle, nonce)
	if !bytes.Equal(tag, want) {
		t.Fatalf("tag = %x, want %x", tag, want)
	}
	if !TagValid(unlock, handle, nonce, want) {
		t.Fatal("TagValid refuses the right tag")
	}
	for name, bad := range map[string][4][]byte{
		"other nonce":  {unlock, handle, seq(32, 91), tag},
		"other handle": {unlock, seq(16, 51), nonce, tag},
		"other key":    {seq(32, 4), handle, nonce, tag},
		"short tag":    {unlock, handle, nonce, tag[:31]},
		"empty tag":    {unlock, handle, nonce, nil},
	} {
		if TagValid(bad[0], bad[1], bad[2], bad[3]) {
			t.Errorf("TagValid accepts %s", name)
		}
	}

	secret, err := SessionSecret(unlock, x, nonce)
	if err != nil {
		t.Fatal(err)
	}
	prk := rfc5869Extract(nonce, cat(unlock, x))
	if want := rfc5869Expand(prk, []byte("coffer/v1 realm session"), 64); !bytes.Equal(secret, want) {
		t.Fatalf("session secret = %x, want %x", secret, want)
	}
	for _, bad := range [][3][]byte{{unlock[:31], x, nonce}, {unlock, x[:31], nonce}, {unlock, x, nonce[:16]}} {
		if _, err := SessionSecret(bad[0], bad[1], bad[2]); err == nil {
			t.Error("SessionSecret accepted a short input")
		}
	}
}

func TestAnchorAndSetCodePinned(t *testing.T) {
	k := seq(32, 9)
	setID := seq(16, 33)
	priv, err := AnchorKey(k, setID)
	if err != nil {
		t.Fatal(err)
	}
	seed := rfc5869Expand(rfc5869Extract(nil, k), cat([]byte("coffer/v1 realm anchor"), setID), 32)
	if !bytes.Equal(priv.Seed(), seed) {
		t.Fatalf("anchor seed = %x, want %x", priv.Seed(), seed)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if other, _ := AnchorKey(k, seq(16, 34)); bytes.Equal(other.Public().(ed25519.PublicKey), pub) {
		t.Fatal("two sets share an anchor")
	}
	if _, err := AnchorKey(k[:16], setID); err == nil {
		t.Error("AnchorKey accepted a 16-byte K")
	}

	code := SetCode(setID, pub)
	h := sha256.Sum256(cat([]byte("coffer/v1 realm set code\x00"), setID, pub))
	if want := base32ByHand(h[:10]); code != want {
		t.Fatalf("set code = %s, want %s", code, want)
	}
	if len(code) != 16 || strings.ToUpper(code) != code || strings.Contains(code, "=") {
		t.Fatalf("set code %q is not 16 upper-case characters without padding", code)
	}
}

// base32ByHand is RFC 4648 base32 of a multiple of 5 bytes, no padding.
func base32ByHand(b []byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	var sb strings.Builder
	var acc uint64
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(alphabet[(acc>>uint(bits))&31])
		}
	}
	return sb.String()
}
