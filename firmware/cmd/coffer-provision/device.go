package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

// provisionDevice is the provisioning station's job for a vault it is
// connected to directly (a USB armory on the station's own USB port, or the
// firmware in QEMU): read the vault's identity, show it, sign it with the
// offline provisioning key and install the signed bundle, then read it back
// as a client would. With bundleFile set, the bundle read back is written
// there: the release log operator logs it (coffer-release add-identity),
// so that every vault the provisioning key vouches for is public.
func provisionDevice(connect, keyFile, bundleFile string, yes bool, stdin io.Reader, stdout io.Writer) error {
	key, err := provision.ReadKey(keyFile)
	if err != nil {
		return err
	}
	dial, err := transport.ParseDialer(connect, transport.DefaultUSBID)
	if err != nil {
		return fmt.Errorf("provision device: -connect: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return err
	}
	c := protocol.NewStreamClient(conn)
	defer c.Close()
	call := func(typ protocol.Type, req, reply protocol.Message) error {
		b, err := protocol.Encode(typ, req)
		if err != nil {
			return err
		}
		out, err := c.RoundTrip(ctx, b)
		if err != nil {
			return err
		}
		return protocol.Decode(out, typ, reply)
	}

	var id protocol.Identity
	if err := call(protocol.TypeUnsignedIdentity, &protocol.Empty{}, &id); err != nil {
		return fmt.Errorf("reading the vault's identity: %w", err)
	}
	fmt.Fprintf(stdout, "vault %q\n  signing key   %x\n  AKE key       %x\n  HPKE key      %x\n  firmware      %x\n  max limit     %d\n  insecure      %v\n",
		id.Name, id.SigningKey, id.AKEKey, id.HPKEKey, id.FirmwareHash, id.MaxLimit, id.Insecure)
	if id.Insecure {
		fmt.Fprintln(stdout, "WARNING: this vault says it is INSECURE (software vault or emulator).")
	}
	if !yes {
		fmt.Fprint(stdout, "Check the firmware hash against the release you flashed. Sign this identity? [y/N] ")
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(answer)); a != "y" && a != "yes" {
			return errors.New("provision device: not signed")
		}
	}
	signed, err := protocol.SignIdentity(key, &id)
	if err != nil {
		return err
	}
	if err := call(protocol.TypeInstallIdentity, &signed, &protocol.Empty{}); err != nil {
		return fmt.Errorf("installing the signed identity: %w", err)
	}
	var got protocol.SignedIdentity
	if err := call(protocol.TypeIdentity, &protocol.Empty{}, &got); err != nil {
		return fmt.Errorf("reading the bundle back: %w", err)
	}
	if _, err := got.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		return fmt.Errorf("the vault serves a bundle that does not verify: %w", err)
	}
	fmt.Fprintf(stdout, "provisioned: the vault serves its identity signed by %x\n", key.Public())
	if bundleFile != "" {
		if err := provision.WriteCBOR(bundleFile, &got); err != nil {
			return fmt.Errorf("provisioned, but writing the bundle: %w", err)
		}
		fmt.Fprintf(stdout, "bundle → %s (log it: coffer-release add-identity -bundle %s …)\n", bundleFile, bundleFile)
	}
	return nil
}
