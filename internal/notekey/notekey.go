// Package notekey keeps signed-note keys (C2SP signed-note, Ed25519) in
// files: the release key that signs the release log's checkpoints
// (firmware/cmd/coffer-release) and a witness's key that cosigns them
// (firmware/cmd/coffer-witness). A key file holds one comment line and the
// private key in note "skey" form; it is written once, mode 0600, never
// over an existing file.
package notekey

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/internal/atomicfile"
)

// New generates a key named name, writes its private half to path (never
// over an existing file) and returns the verifier key (vkey).
func New(path, name, comment string) (vkey string, err error) {
	if path == "" {
		return "", errors.New("keygen: -o is required")
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err == nil {
		// GenerateKey does not check the name; NewSigner does.
		_, err = note.NewSigner(skey)
	}
	if err != nil || name == "" {
		return "", fmt.Errorf("keygen: key name %q is not a valid note key name", name)
	}
	// Whole or absent after a crash: a torn key would refuse a rerun.
	content := fmt.Sprintf("# %s\n%s\n", strings.ReplaceAll(comment, "\n", " "), skey)
	if err := atomicfile.Create(path, []byte(content), 0o600); err != nil {
		return "", err
	}
	return vkey, nil
}

// Read returns the private key (skey) a file written by New holds. The
// error never quotes the file's contents: they are a secret.
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := note.NewSigner(line); err != nil {
			return "", fmt.Errorf("%s: not a note key file", path)
		}
		return line, nil
	}
	return "", fmt.Errorf("%s: not a note key file", path)
}

// Signer reads a key file and returns its signer.
func Signer(path string) (note.Signer, error) {
	skey, err := Read(path)
	if err != nil {
		return nil, err
	}
	return note.NewSigner(skey)
}

// Matches reports whether signer is the private half of vkey: it signs a
// probe and verifies it with vkey. A policy that pins one key while the
// operator signs with another would publish checkpoints nobody accepts.
func Matches(signer note.Signer, vkey string) bool {
	v, err := note.NewVerifier(vkey)
	if err != nil || v.Name() != signer.Name() || v.KeyHash() != signer.KeyHash() {
		return false
	}
	probe := []byte("coffer notekey probe\n")
	sig, err := signer.Sign(probe)
	return err == nil && v.Verify(probe, sig)
}

// VerifierKey derives the verifier key (vkey) of a private key (skey), so
// that a key file alone gives the policy its release key.
func VerifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("notekey: not a note private key")
	}
	name, hash, key64 := parts[2], parts[3], parts[4]
	key, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", errors.New("notekey: not an Ed25519 note private key")
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	vkey := name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...))
	// NewVerifier checks the key hash against the name and key.
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", errors.New("notekey: the private key's hash does not match its key")
	}
	return vkey, nil
}
