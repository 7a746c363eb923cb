package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/internal/testcert"
	"github.com/cofferhsm/coffer/protocol"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// softVault serves a development software vault (created and
// self-provisioned, as `softvault dev` does) on a unix socket in dir until
// the test ends, and returns the socket's path: cofferd reaches it as it
// reaches any vault, since it links no vault code itself.
func softVault(t *testing.T, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "vault.sock")
	softvaulttest.ServeDev(t, filepath.Join(dir, "vault"), sock)
	return sock
}

// TestCommand drives the command as an admin would: add accounts, list and
// remove them, start the daemon on a software vault's socket with settings
// from the environment, talk to it, and stop it.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	accounts := filepath.Join(dir, "accounts.json")
	var out, errs bytes.Buffer
	// Flags after the positional name, as API.md writes them.
	if err := run(context.Background(), []string{"account", "add", "-accounts", accounts, "alice", "-device", "main"}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err, errs.String())
	}
	token := regexp.MustCompile(`token\s+(\S+)`).FindStringSubmatch(out.String())
	if token == nil {
		t.Fatalf("no token printed:\n%s", out.String())
	}
	// -accounts from the environment.
	out.Reset()
	if err := run(context.Background(), []string{"account", "add", "bob"}, env(map[string]string{"COFFERD_ACCOUNTS": accounts}), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"account", "list", "-accounts", accounts}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alice") || !strings.Contains(out.String(), "main") || !strings.Contains(out.String(), "bob") {
		t.Fatalf("list:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"account", "remove", "-accounts", accounts, "bob"}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"account", "remove", "-accounts", accounts, "bob"}, env(nil), &out, &errs, nil); err == nil {
		t.Fatal("removed bob twice")
	}

	// A release log directory, served from -log (here COFFERD_LOG).
	logDir := filepath.Join(dir, "release-log")
	checkpoint := []byte("releases.coffer.test\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— releases.coffer.test AAAA\n")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logDir, "checkpoint"), checkpoint, 0o644); err != nil {
		t.Fatal(err)
	}

	// The daemon: the listen address and device from the environment, a
	// flag overriding the environment's log level.
	ctx, stop := context.WithCancel(context.Background())
	var logs syncbuf.Buffer
	addrs := make(chan net.Addr, 2)
	done := make(chan error, 1)
	e := env(map[string]string{
		"COFFERD_LISTEN":         "127.0.0.1:0",
		"COFFERD_METRICS_LISTEN": "127.0.0.1:0",
		"COFFERD_VAULT":          "main=unix:" + softVault(t, dir),
		"COFFERD_LOG_LEVEL":      "error",
		"COFFERD_LOG_FORMAT":     "json",
		"COFFERD_LOG":            logDir,
		// A software vault, which cofferd serves only when told to.
		"COFFERD_ALLOW_INSECURE_VAULT": "true",
	})
	go func() {
		done <- run(ctx, []string{"-accounts", accounts, "-log-level", "debug", "-poll", "50ms"}, e, io.Discard, &logs,
			func(api, metrics net.Addr) { addrs <- api; addrs <- metrics })
	}()
	var api, metrics net.Addr
	select {
	case api = <-addrs:
		metrics = <-addrs
	case err := <-done:
		t.Fatalf("cofferd exited: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("cofferd did not start")
	}

	// The vault is another process: cofferd connects and reads its
	// identity in the background.
	var h struct {
		Status   string
		Devices  map[string]struct{ Connected, Insecure bool }
		Warnings []string
	}
	eventually(t, "healthz to show the vault connected and insecure", func() bool {
		resp, err := http.Get("http://" + metrics.String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h.Devices = nil
		json.NewDecoder(resp.Body).Decode(&h)
		return h.Status == "ok" && h.Devices["main"].Connected && h.Devices["main"].Insecure
	})
	if len(h.Warnings) == 0 {
		t.Fatalf("healthz: %+v", h)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+api.String()+"/v1/vault", bytes.NewReader(mustIdentityRequest(t)))
	req.Header.Set("Authorization", "Bearer "+token[1])
	req.Header.Set("Content-Type", "application/cbor")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var signed protocol.SignedIdentity
	if resp.StatusCode != 200 || protocol.Decode(b, protocol.TypeIdentity, &signed) != nil {
		t.Fatalf("identity through the command: %d %x", resp.StatusCode, b)
	}

	resp, err = http.Get("http://" + metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `cofferd_device_connected{device="main"} 1`) {
		t.Fatalf("metrics:\n%s", b)
	}
	// With a metrics address, the API address does not serve metrics.
	if resp, err := http.Get("http://" + api.String() + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("metrics on the API address: %v %v", resp, err)
	}

	// The release log, without a token, byte for byte.
	if resp, err := http.Get("http://" + api.String() + "/v1/log/checkpoint"); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(b, checkpoint) {
			t.Fatalf("GET /v1/log/checkpoint through the command: %d %q", resp.StatusCode, b)
		}
	}

	// Realm storage lands in the default -realms folder, beside the
	// accounts file.
	req, _ = http.NewRequest(http.MethodPut, "http://"+api.String()+"/v1/realms/manifest", strings.NewReader("a manifest"))
	req.Header.Set("Authorization", "Bearer "+token[1])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT /v1/realms/manifest through the command: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cofferd: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cofferd did not stop")
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "cofferd-realms", "*.json")); len(files) != 1 {
		t.Fatalf("realm files after a PUT: %v", files)
	}
	l := logs.String()
	for _, want := range []string{`"level":"DEBUG"`, "INSECURE", `"msg":"request"`, "shutting down", `"msg":"stopped"`} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// eventually waits for cond, which the daemon reaches in the background.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustIdentityRequest(t *testing.T) []byte {
	b, err := protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-vault", "tcp:1.2.3.4:5"},
		{"-vault", "soft:x"},
		{"-vault", ""},
		{"-login-rate", "10"},
		{"-usb-id", "x"},
		{"-log-format", "xml"},
		{"-inflight", "0"},
		{"serve", "extra"},
		{"frobnicate"},
		{"account"},
		{"account", "add"},
		{"vault"},
		{"vault", "frobnicate"},
		{"vault", "declare-rollback", "-reason", "restored from last night's copy"},
		{"vault", "declare-rollback", "-accounts", "a.json"},
	} {
		// A good device, so that each is refused for its own flag.
		e := env(map[string]string{"COFFERD_VAULT": "unix:" + filepath.Join(t.TempDir(), "none.sock")})
		if err := run(context.Background(), args, e, io.Discard, io.Discard, nil); err == nil {
			t.Errorf("%q accepted", args)
		} else if usage := args[0] == "serve" || args[0] == "frobnicate" || args[0] == "account" || args[0] == "vault"; usage != (exitCode(err, io.Discard) == 2) {
			// Words that are not cofferd's are usage errors (status 2);
			// a bad value of a flag (often from the environment) is 1.
			t.Errorf("%q: %v: status %d", args, err, exitCode(err, io.Discard))
		}
	}
	// No device at all: cofferd has no vault of its own to fall back on.
	if err := run(context.Background(), nil, env(nil), io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "no vault device") {
		t.Errorf("no -vault: %v", err)
	}
	if err := run(context.Background(), nil, env(map[string]string{"COFFERD_QUEUE": "many"}), io.Discard, io.Discard, nil); err == nil {
		t.Error("COFFERD_QUEUE=many accepted")
	}
}

// TestTLS serves the API over TLS with a self-signed certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := testcert.New(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	ctx, stop := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 2)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-accounts", filepath.Join(dir, "a.json"), "-realms", filepath.Join(dir, "realms"), "-vault", "unix:" + softVault(t, dir),
			"-tls-cert", certFile, "-tls-key", keyFile, "-allow-insecure-vault"}, env(nil), io.Discard, io.Discard, func(api, _ net.Addr) { addrs <- api })
	}()
	var api net.Addr
	select {
	case api = <-addrs:
	case err := <-done:
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	eventually(t, "healthz over TLS to answer 200 (the vault connected)", func() bool {
		var err error
		if resp, err = client.Get("https://" + api.String() + "/healthz"); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if resp.TLS == nil {
		t.Fatalf("healthz over TLS: %d", resp.StatusCode)
	}
	// Plain HTTP is not served there.
	if resp, err := http.Get("http://" + api.String() + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS port")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"-tls-cert", certFile}, env(nil), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("-tls-cert without -tls-key accepted")
	}
}
