package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
)

// TestFrontListener runs cofferd fronted by a messenger: its CA and its
// backend's client certificate (made here with cofferd peer ca/cert), a
// server certificate for the front listener; the backend names a user, whose
// account f.ID is made at its first request; a client without the
// messenger's certificate gets nothing, and `account add` refuses f. names.
func TestFrontListener(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cmd := commands(t)
	cmd("peer", "ca", "-out", filepath.Join(dir, "messenger"))
	cmd("peer", "cert", "-ca", filepath.Join(dir, "messenger"), "-host", "backend", "-out", filepath.Join(dir, "backend"))
	cmd("peer", "ca", "-out", filepath.Join(dir, "server-ca"))
	cmd("peer", "cert", "-ca", filepath.Join(dir, "server-ca"), "-host", "cofferd", "-out", filepath.Join(dir, "server"))
	db := migrated(t, dir)
	if err := run(ctx, []string{"account", "add", "-db", db, "f.4711"}, env(nil), io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("account add f.4711: %v", err)
	}

	// A free port for the front listener (ready reports the API's only).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := l.Addr().String()
	l.Close()
	base := []string{"-listen", "127.0.0.1:0", "-db", db, "-realms", filepath.Join(dir, "realms"), "-rollbacks", filepath.Join(dir, "rollbacks.json"), "-allow-insecure-vault"}
	frontFlags := []string{"-front-listen", front, "-front-ca", filepath.Join(dir, "messenger", "ca.crt"),
		"-front-cert", filepath.Join(dir, "server", "cofferd.crt"), "-front-key", filepath.Join(dir, "server", "cofferd.key")}
	// Incomplete, or a bundle as the CA: cofferd does not start.
	for _, drop := range []int{1, 3, 5, 7} {
		args := append(append([]string{"-vault", "unix:" + filepath.Join(dir, "none.sock")}, base...), append(append([]string{}, frontFlags[:drop-1]...), frontFlags[drop+1:]...)...)
		if err := run(ctx, args, env(nil), io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "-front") {
			t.Fatalf("without %s: %v", frontFlags[drop-1], err)
		}
	}
	bundle := filepath.Join(dir, "bundle.crt")
	a, _ := os.ReadFile(filepath.Join(dir, "messenger", "ca.crt"))
	b, _ := os.ReadFile(filepath.Join(dir, "server-ca", "ca.crt"))
	os.WriteFile(bundle, append(a, b...), 0o600)
	bad := append([]string{}, frontFlags...)
	bad[3] = bundle
	if err := run(ctx, append(append([]string{"-vault", "unix:" + filepath.Join(dir, "none.sock")}, base...), bad...), env(nil), io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "bundle") {
		t.Fatalf("a bundle as -front-ca: %v", err)
	}

	cctx, stop := context.WithCancel(ctx)
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs syncbuf.Buffer
	go func() {
		done <- run(cctx, append(append([]string{"-vault", "unix:" + softVault(t, dir)}, base...), frontFlags...), env(nil), io.Discard, &logs, func(a, _ net.Addr) { addrs <- a })
	}()
	select {
	case <-addrs:
	case err := <-done:
		t.Fatalf("cofferd exited: %v\n%s", err, logs.String())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: pool, ServerName: "cofferd"}
		if withCert {
			c, err := tls.LoadX509KeyPair(filepath.Join(dir, "backend", "backend.crt"), filepath.Join(dir, "backend", "backend.key"))
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	account := func(c *http.Client) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+front+"/v1/account", nil)
		req.Header.Set("Coffer-Front-User", "4711")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := account(client(false)); err == nil {
		t.Fatalf("a client without the messenger's certificate: %d", code)
	}
	eventually(t, "the fronted user's account served (the vault connected)", func() bool {
		code, err := account(client(true))
		if err != nil {
			t.Fatal(err)
		}
		return code == 200
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if list := cmd("account", "list", "-db", db); !strings.Contains(list, "f.4711") {
		t.Fatalf("account list:\n%s", list)
	}
}
