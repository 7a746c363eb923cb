package notekey

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestKeyFileRoundTripAndRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "release.key")
	vkey, err := New(path, "example.org/coffer", "coffer release key")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Signer(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "example.org/coffer" || !Matches(s, vkey) {
		t.Fatalf("the key read back (%q) is not the key written (%q)", s.Name(), vkey)
	}
	skey, _ := Read(path)
	if v, err := VerifierKey(skey); err != nil || v != vkey {
		t.Fatalf("VerifierKey gave %q, %v; want %q", v, err, vkey)
	}
	if _, err := VerifierKey(strings.Replace(skey, "+", "+x", 3)); err == nil {
		t.Fatal("VerifierKey accepted a mangled key")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, err := New(path, "other", "x"); err == nil {
		t.Fatal("New overwrote a key")
	}
	if _, err := New("", "n", "x"); err == nil {
		t.Fatal("New without a file accepted")
	}
	if _, err := New(filepath.Join(dir, "bad"), "bad name+", "x"); err == nil {
		t.Fatal("a key name with + accepted")
	}
	_, otherV, _ := note.GenerateKey(rand.Reader, "example.org/coffer")
	if otherV != "" && Matches(s, otherV) {
		t.Fatal("Matches accepted another key of the same name")
	}
	secret, _ := Read(path)
	for name, content := range map[string]string{
		"empty":   "",
		"comment": "# only\n",
		"garbage": "# c\nPRIVATE+KEY+x+00000000+AAAA\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		_, err := Read(p)
		if err == nil {
			t.Errorf("Read accepted %s", name)
		} else if strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes the key file: %v", err)
		}
	}
}
