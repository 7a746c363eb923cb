package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/protocol"
)

// serveVault serves the software vault in state on a unix socket until
// the test ends (or stop is called), and returns the socket's path.
func serveVault(t *testing.T, state string) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "v.sock")
	return sock, softvaulttest.Serve(t, state, sock)
}

func dial(t *testing.T, sock string) *protocol.StreamClient {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	sc := protocol.NewStreamClient(c)
	t.Cleanup(func() { sc.Close() })
	return sc
}

// The offline path: a key, a vault's unsigned identity signed into a
// bundle, the bundle installed; a bundle signed for another vault refused.
func TestProvisioningCommands(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	var out bytes.Buffer
	ctx := context.Background()
	must := func(args ...string) {
		t.Helper()
		out.Reset()
		if err := run(args, strings.NewReader(""), &out, io.Discard); err != nil {
			t.Fatalf("coffer-provision %v: %v", args, err)
		}
	}
	mustDo := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	mustDo("softvault init", softvault.Init(ctx, state, 10, io.Discard))
	if err := softvault.Init(ctx, state, 10, io.Discard); err == nil {
		t.Fatal("init over an existing vault succeeded")
	}
	must("keygen", "-o", filepath.Join(dir, "prov.key"))
	keygenOut := out.String()
	if !strings.Contains(keygenOut, "provisioning public key: ") {
		t.Fatalf("keygen printed %q", keygenOut)
	}
	if err := run([]string{"keygen", "-o", filepath.Join(dir, "prov.key")}, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("keygen overwrote a key")
	}
	must("public", "-key", filepath.Join(dir, "prov.key"))
	if got := strings.TrimSpace(out.String()); !strings.Contains(keygenOut, got) || len(got) != 64 {
		t.Fatalf("provision public printed %q; keygen said %q", got, keygenOut)
	}
	mustDo("softvault identity", softvault.WriteIdentity(ctx, state, filepath.Join(dir, "id.cbor"), io.Discard))
	must("sign", "-key", filepath.Join(dir, "prov.key"), "-in", filepath.Join(dir, "id.cbor"), "-o", filepath.Join(dir, "bundle.cbor"))
	mustDo("softvault install", softvault.InstallBundle(ctx, state, filepath.Join(dir, "bundle.cbor"), io.Discard))

	key, _ := provision.ReadKey(filepath.Join(dir, "prov.key"))
	sock, stop := serveVault(t, state)
	if _, err := testclient.FetchIdentity(ctx, dial(t, sock).RoundTrip, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("identity after provisioning: %v", err)
	}
	// A bundle signed for another vault is refused at install.
	mustDo("softvault init", softvault.Init(ctx, filepath.Join(dir, "other"), 10, io.Discard))
	mustDo("softvault identity", softvault.WriteIdentity(ctx, filepath.Join(dir, "other"), filepath.Join(dir, "other.cbor"), io.Discard))
	must("sign", "-key", filepath.Join(dir, "prov.key"), "-in", filepath.Join(dir, "other.cbor"), "-o", filepath.Join(dir, "other-bundle.cbor"))
	stop()
	if err := softvault.InstallBundle(ctx, state, filepath.Join(dir, "other-bundle.cbor"), io.Discard); err == nil {
		t.Fatal("installed another vault's bundle")
	}
}

// The provisioning station's path for a vault it reaches directly: read the
// unsigned identity over the socket, sign it, install it, read it back.
func TestProvisionDeviceOverASocket(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ctx := context.Background()
	if err := softvault.Init(ctx, state, 10, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"keygen", "-o", filepath.Join(dir, "prov.key")}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	sock, _ := serveVault(t, state)
	key, _ := provision.ReadKey(filepath.Join(dir, "prov.key"))
	if _, err := testclient.FetchIdentity(ctx, dial(t, sock).RoundTrip, key.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("an unprovisioned vault served an identity")
	}
	var out bytes.Buffer
	err := provisionDevice("unix:"+sock, filepath.Join(dir, "prov.key"), "", false, strings.NewReader("n\n"), &out)
	if err == nil {
		t.Fatal("provisioned although the operator answered no")
	}
	// Through the command, as the station runs it.
	bundleFile := filepath.Join(dir, "vault.bundle")
	if err := run([]string{"device", "-key", filepath.Join(dir, "prov.key"), "-connect", "unix:" + sock, "-o", bundleFile}, strings.NewReader("y\n"), &out, io.Discard); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var saved protocol.SignedIdentity
	if b, err := os.ReadFile(bundleFile); err != nil || protocol.Unmarshal(b, &saved) != nil {
		t.Fatalf("the bundle file for the release log: %v", err)
	}
	if _, err := saved.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("the saved bundle does not verify: %v", err)
	}
	if !strings.Contains(out.String(), "INSECURE") || !strings.Contains(out.String(), "provisioned:") {
		t.Fatalf("provision device said:\n%s", out.String())
	}
	if _, err := testclient.FetchIdentity(ctx, dial(t, sock).RoundTrip, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("identity after provisioning: %v", err)
	}
	if err := run([]string{"device", "-key", filepath.Join(dir, "prov.key"), "-connect", "soft:" + state, "-yes"}, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("-connect soft: accepted")
	}
}
