package client

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"io"
	"os"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/plugin"
	"golang.org/x/crypto/curve25519"
	xhkdf "golang.org/x/crypto/hkdf"
)

// vectorKeys are fixed keys for tests; testdata/vectors/keys holds the same
// four, derived by an independent generator.
func vectorKeys() [][]byte {
	seq := make([]byte, 32)
	for i := range seq {
		seq[i] = byte(i)
	}
	h := sha256.Sum256([]byte("coffer/v1 test vector"))
	return [][]byte{make([]byte, 32), bytes.Repeat([]byte{0xff}, 32), seq, h[:]}
}

func mustKey(t testing.TB, b []byte) *BackupKey {
	t.Helper()
	k, err := BackupKeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// independentDerivation computes the age identity's pieces with other code
// than key.go: x/crypto's HKDF, curve25519, and age's own recipient encoder.
func independentDerivation(t *testing.T, k []byte) (scalar []byte, recipient string) {
	t.Helper()
	scalar = make([]byte, 32)
	if _, err := io.ReadFull(xhkdf.New(sha256.New, k, nil, []byte("coffer/v1 age identity")), scalar); err != nil {
		t.Fatal(err)
	}
	pub, err := curve25519.X25519(scalar, curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	epub, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	recipient, err = plugin.EncodeX25519Recipient(epub)
	if err != nil {
		t.Fatal(err)
	}
	return scalar, recipient
}

// Our bech32 encoder is age's: same output for an hrp age lets us reach.
func TestBech32MatchesAge(t *testing.T) {
	for n := range 70 {
		data := bytes.Repeat([]byte{byte(n * 37)}, n)
		for i := range data {
			data[i] ^= byte(i)
		}
		if got, want := bech32Encode("AGE-PLUGIN-COFFERTEST-", data), plugin.EncodeIdentity("coffertest", data); got != want {
			t.Fatalf("%d bytes: %s, age %s", n, got, want)
		}
		if got, want := bech32Encode("age1coffertest", data), plugin.EncodeRecipient("coffertest", data); got != want {
			t.Fatalf("%d bytes: %s, age %s", n, got, want)
		}
	}
}

// A backup made to the derived recipient decrypts with stock age's
// decryption given the exported identity string, and not with another K's.
func TestAgeDecryptsWithExportedIdentity(t *testing.T) {
	k, err := NewBackupKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := k.AgeRecipient()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ParseRecipient(r)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/hello.txt", []byte("hello, age\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteBackup(&buf, rec, []string{dir + "/hello.txt"}, nil); err != nil {
		t.Fatal(err)
	}
	// What `coffer key export-age` prints, read the way `age -d -i` does.
	ids, err := age.ParseIdentities(strings.NewReader("# coffer\n" + k.AgeIdentityString() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	pr, err := age.Decrypt(bytes.NewReader(buf.Bytes()), ids...)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain, []byte("hello, age\n")) || !bytes.Contains(plain, []byte("hello.txt")) {
		t.Error("decrypted tar lacks the file")
	}
	other, _ := NewBackupKey(nil)
	oid, _ := other.AgeIdentity()
	if _, err := age.Decrypt(bytes.NewReader(buf.Bytes()), oid); err == nil {
		t.Error("another key's identity decrypts the backup")
	}
}

func TestBackupKeyFromBytes(t *testing.T) {
	for _, n := range []int{0, 31, 33} {
		if _, err := BackupKeyFromBytes(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key accepted", n)
		}
	}
	a, _ := NewBackupKey(nil)
	b, _ := NewBackupKey(nil)
	if a.Equal(b) {
		t.Error("two fresh keys are equal")
	}
	c := mustKey(t, a.Bytes())
	if !a.Equal(c) {
		t.Error("copied key differs")
	}
	c.Wipe()
	if !c.Equal(mustKey(t, make([]byte, 32))) {
		t.Error("Wipe left bytes")
	}
}
