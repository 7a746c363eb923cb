// Command coffer-provision is the provisioning station's tool: it holds the
// offline provisioning key whose public half clients pin, and vouches for
// vaults by signing their identities. It runs on the station, never on the
// host that serves, and links no vault code (a test keeps it so).
//
//	coffer-provision keygen -o FILE                make a provisioning key; prints its public key
//	coffer-provision public -key FILE              print a provisioning key's public half (hex)
//	coffer-provision sign -key FILE -in IDENTITY -o BUNDLE
//	                                               sign an unsigned identity (softvault identity)
//	coffer-provision device -key FILE -connect unix:PATH|serial:PATH|serial:auto [-o BUNDLE]
//	                                               read, sign and install the identity of a vault
//	                                               connected directly (cofferd never relays provisioning)
package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cofferhsm/coffer/internal/buildinfo"
	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
)

func main() {
	if len(os.Args) > 1 && buildinfo.IsVersionFlag(os.Args[1]) {
		fmt.Print(buildinfo.Line("coffer-provision"))
		return
	}
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coffer-provision:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: coffer-provision keygen|public|sign|device … (see -h of each)")

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("coffer-provision "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "keygen":
		out := fs.String("o", "", "write the private key here (refuses to overwrite)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		pub, err := provision.NewKey(*out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "provisioning public key: %s\n", hex.EncodeToString(pub))
		return nil
	case "public":
		keyFile := fs.String("key", "", "provisioning private key file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		key, err := provision.ReadKey(*keyFile)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, hex.EncodeToString(key.Public().(ed25519.PublicKey)))
		return nil
	case "device":
		keyFile := fs.String("key", "", "provisioning private key file")
		connect := fs.String("connect", "", "the vault: unix:PATH (software vault, QEMU UART) or serial:PATH|auto (USB armory)")
		yes := fs.Bool("yes", false, "sign without asking")
		bundle := fs.String("o", "", "also write the signed bundle here, for the release log (coffer-release add-identity)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return provisionDevice(*connect, *keyFile, *bundle, *yes, stdin, stdout)
	case "sign":
		keyFile := fs.String("key", "", "provisioning private key file")
		in := fs.String("in", "", "unsigned identity (from softvault identity, or a device)")
		out := fs.String("o", "", "write the signed bundle here")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		key, err := provision.ReadKey(*keyFile)
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
		if err := provision.WriteCBOR(*out, &signed); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed identity of %q (insecure=%v, max limit %d) → %s\n", id.Name, id.Insecure, id.MaxLimit, *out)
		return nil
	}
	return errUsage
}
