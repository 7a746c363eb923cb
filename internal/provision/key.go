package provision

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
)

// The provisioning key is the offline key whose public half clients pin. Its
// file holds the hex Ed25519 seed after a comment line; keep it off any
// machine that serves.
const provisioningKeyHeader = "# coffer provisioning key (Ed25519 seed, hex). Keep offline.\n"

// NewKey writes a new provisioning key to path (never over an
// existing file) and returns its public half.
func NewKey(path string) (ed25519.PublicKey, error) {
	if path == "" {
		return nil, errors.New("keygen: -o is required")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "%s%s\n", provisioningKeyHeader, hex.EncodeToString(priv.Seed()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return pub, err
}

// ReadKey reads a key written by NewKey.
func ReadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var seedHex string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			seedHex = line
			break
		}
	}
	seed, err := hex.DecodeString(seedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: not a provisioning key file", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// WriteCBOR writes one protocol message to path.
func WriteCBOR(path string, m protocol.Message) error {
	if path == "" {
		return errors.New("an output file (-o) is required")
	}
	b, err := protocol.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
