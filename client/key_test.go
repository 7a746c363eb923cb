package client

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/plugin"
	"golang.org/x/crypto/curve25519"
	xhkdf "golang.org/x/crypto/hkdf"
)

var update = flag.Bool("update", false, "rewrite testdata/ vectors from the code")

// keyVector is one entry of testdata/vectors.json.
type keyVector struct {
	K            string `json:"k"`
	AgeIdentity  string `json:"age_identity"`
	AgeRecipient string `json:"age_recipient"`
	KeyText      string `json:"key_text"`
}

type vectorFile struct {
	Comment string      `json:"comment"`
	Keys    []keyVector `json:"keys"`
}

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

func TestKeyVectors(t *testing.T) {
	const path = "testdata/vectors.json"
	var vf vectorFile
	if *update {
		vf.Comment = "Coffer client vectors (SPEC.md): K (hex) to its age identity and recipient (HKDF-SHA256, info \"coffer/v1 age identity\"), and K to its 64-digit key with its CRC-16 check group. Regenerate with go test ./client -run TestKeyVectors -update."
		for _, kb := range vectorKeys() {
			k := mustKey(t, kb)
			r, err := k.AgeRecipient()
			if err != nil {
				t.Fatal(err)
			}
			vf.Keys = append(vf.Keys, keyVector{K: hex.EncodeToString(kb), AgeIdentity: k.AgeIdentityString(), AgeRecipient: r, KeyText: k.KeyText()})
		}
		b, _ := json.MarshalIndent(vf, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Keys) < 4 {
		t.Fatalf("only %d key vectors", len(vf.Keys))
	}
	for _, v := range vf.Keys {
		kb, err := hex.DecodeString(v.K)
		if err != nil {
			t.Fatal(err)
		}
		k := mustKey(t, kb)

		// The code agrees with the file.
		if got := k.AgeIdentityString(); got != v.AgeIdentity {
			t.Errorf("K=%s: identity %s, vector %s", v.K, got, v.AgeIdentity)
		}
		r, err := k.AgeRecipient()
		if err != nil || r != v.AgeRecipient {
			t.Errorf("K=%s: recipient %s (%v), vector %s", v.K, r, err, v.AgeRecipient)
		}
		if got := k.KeyText(); got != v.KeyText {
			t.Errorf("K=%s: key text %s, vector %s", v.K, got, v.KeyText)
		}

		// And the file agrees with an independent derivation and with age.
		scalar, recipient := independentDerivation(t, kb)
		if recipient != v.AgeRecipient {
			t.Errorf("K=%s: independent recipient %s, vector %s", v.K, recipient, v.AgeRecipient)
		}
		id, err := age.ParseX25519Identity(v.AgeIdentity)
		if err != nil {
			t.Fatalf("age rejects the vector identity: %v", err)
		}
		if id.String() != v.AgeIdentity || id.Recipient().String() != v.AgeRecipient {
			t.Errorf("K=%s: age re-encodes the identity as %s / %s", v.K, id, id.Recipient())
		}
		if want := strings.ToUpper(bech32Encode("age-secret-key-", scalar)); want != v.AgeIdentity {
			t.Errorf("K=%s: identity is not the bech32 of the HKDF scalar", v.K)
		}
		back, err := ParseKeyText(v.KeyText)
		if err != nil || !back.Equal(k) {
			t.Errorf("K=%s: key text does not parse back: %v", v.K, err)
		}
	}
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
