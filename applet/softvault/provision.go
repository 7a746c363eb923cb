package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cofferhsm/coffer/protocol"
)

// The provisioning key is the offline key whose public half clients pin. Its
// file holds the hex Ed25519 seed after a comment line; keep it off any
// machine that serves.
const provisioningKeyHeader = "# coffer provisioning key (Ed25519 seed, hex). Keep offline.\n"

func provision(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("softvault provision "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "keygen":
		out := fs.String("o", "", "write the private key here (refuses to overwrite)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		pub, err := newProvisioningKey(*out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "provisioning public key: %s\n", hex.EncodeToString(pub))
		return nil
	case "sign":
		keyFile := fs.String("key", "", "provisioning private key file")
		in := fs.String("in", "", "unsigned identity (from softvault identity, or a device)")
		out := fs.String("o", "", "write the signed bundle here")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		key, err := readProvisioningKey(*keyFile)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		var id protocol.Identity
		if err := protocol.Unmarshal(b, &id); err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
		signed, err := protocol.SignIdentity(key, &id)
		if err != nil {
			return err
		}
		if err := writeCBOR(*out, &signed); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed identity of %q (insecure=%v, max limit %d) → %s\n", id.Name, id.Insecure, id.MaxLimit, *out)
		return nil
	}
	return errUsage
}

func newProvisioningKey(path string) (ed25519.PublicKey, error) {
	if path == "" {
		return nil, errors.New("provision keygen: -o is required")
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

func readProvisioningKey(path string) (ed25519.PrivateKey, error) {
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

func writeCBOR(path string, m protocol.Message) error {
	if path == "" {
		return errors.New("an output file (-o) is required")
	}
	b, err := protocol.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
