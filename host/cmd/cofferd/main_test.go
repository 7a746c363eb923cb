package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/softvault/softvaulttest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/host/state"
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
// from the environment, talk to it, and stop it. The state is a SQLite file.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	accounts := "sqlite:" + filepath.Join(dir, "state.db")
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "-db", accounts}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	// Flags after the positional name, as API.md writes them.
	if err := run(context.Background(), []string{"account", "add", "-db", accounts, "alice"}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err, errs.String())
	}
	token := regexp.MustCompile(`token\s+(\S+)`).FindStringSubmatch(out.String())
	if token == nil {
		t.Fatalf("no token printed:\n%s", out.String())
	}
	// -db from the environment.
	out.Reset()
	if err := run(context.Background(), []string{"account", "add", "bob"}, env(map[string]string{"COFFERD_DB": accounts}), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"account", "list", "-db", accounts}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alice") || !strings.Contains(out.String(), "bob") {
		t.Fatalf("list:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"account", "remove", "-db", accounts, "bob"}, env(nil), &out, &errs, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"account", "remove", "-db", accounts, "bob"}, env(nil), &out, &errs, nil); err == nil {
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
		done <- run(ctx, []string{"-db", accounts, "-host", "h1", "-realms", filepath.Join(dir, "cofferd-realms"), "-rollbacks", filepath.Join(dir, "rollbacks.json"), "-log-level", "debug", "-poll", "50ms"}, e, io.Discard, &logs,
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
	if !strings.Contains(string(b), `cofferd_device_connected{device="main"} 1`) || !strings.Contains(string(b), `cofferd_device_accounts{device="main",host="h1",state="active"} 1`) {
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

	// Realm storage lands in the -realms folder.
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
		{"vault", "declare-rollback", "-db", "memory:x", "-reason", "restored"},
		{"device"},
		{"device", "retire"},
		{"device", "frobnicate"},
		{"peer"},
		{"peer", "cert", "-out", "x"},
		{"migrate", "extra"},
	} {
		// A good device, so that each is refused for its own flag.
		e := env(map[string]string{"COFFERD_VAULT": "unix:" + filepath.Join(t.TempDir(), "none.sock")})
		if err := run(context.Background(), args, e, io.Discard, io.Discard, nil); err == nil {
			t.Errorf("%q accepted", args)
		} else if usage := args[0] != "" && args[0][0] != '-'; usage != (exitCode(err, io.Discard) == 2) {
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
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-db", migrated(t, dir), "-realms", filepath.Join(dir, "realms"), "-rollbacks", filepath.Join(dir, "rollbacks.json"), "-vault", "unix:" + softVault(t, dir),
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

// TestCommandRealm runs a realm of two hosts as an operator would, in this
// process (the state shared in one SQLite file): a peer CA and a certificate for
// each host, migrate, an account, two daemons each with a software vault
// and a peer listener; the account's requests at either host reach its one
// device, and the device commands drain, refuse to retire while an account
// is on it, retire once it is moved, and set limits.
func TestCommandRealm(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "state.db")
	ctx := context.Background()
	cmd := commands(t)
	cmd("peer", "ca", "-out", filepath.Join(dir, "ca"))
	if err := run(ctx, []string{"peer", "ca", "-out", filepath.Join(dir, "ca")}, env(nil), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("peer ca overwrote a CA")
	}
	for _, h := range []string{"h1", "h2"} {
		cmd("peer", "cert", "-ca", filepath.Join(dir, "ca"), "-host", h, "-out", filepath.Join(dir, h))
		for _, f := range []string{filepath.Join(dir, "ca", "ca.key"), filepath.Join(dir, h, h+".key")} {
			if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v", f, st.Mode(), err)
			}
		}
	}
	cmd("migrate", "-db", db)
	token := regexp.MustCompile(`token\s+(\S+)`).FindStringSubmatch(cmd("account", "add", "-db", db, "alice"))[1]

	start := func(name, device string) (api net.Addr, stop func()) {
		t.Helper()
		vdir := filepath.Join(dir, "vault-"+name)
		os.MkdirAll(vdir, 0o700)
		cctx, cancel := context.WithCancel(ctx)
		addrs := make(chan net.Addr, 2)
		done := make(chan error, 1)
		var logs syncbuf.Buffer
		go func() {
			done <- run(cctx, []string{"-db", db, "-host", name, "-listen", "127.0.0.1:0", "-poll", "50ms", "-allow-insecure-vault",
				"-vault", device + "=unix:" + softVault(t, vdir), "-realms", filepath.Join(dir, "realms-"+name), "-rollbacks", filepath.Join(dir, "rollbacks-"+name+".json"),
				"-peer-listen", "127.0.0.1:0", "-peer-cert", filepath.Join(dir, name, name+".crt"), "-peer-key", filepath.Join(dir, name, name+".key"),
				"-peer-ca", filepath.Join(dir, name, "ca.crt")}, env(nil), io.Discard, &logs, func(a, _ net.Addr) { addrs <- a })
		}()
		select {
		case api = <-addrs:
		case err := <-done:
			t.Fatalf("%s exited: %v\n%s", name, err, logs.String())
		}
		return api, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v\n%s", name, err, logs.String())
			}
		}
	}
	api1, stop1 := start("h1", "a-main")
	api2, stop2 := start("h2", "b-other")
	defer stop1()
	defer stop2()
	eventually(t, "both devices healthy in h2's view", func() bool {
		resp, err := http.Get("http://" + api2.String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h struct {
			Realm map[string]struct{ Healthy bool }
		}
		json.NewDecoder(resp.Body).Decode(&h)
		return h.Realm["a-main"].Healthy && h.Realm["b-other"].Healthy
	})
	identityAt := func(api net.Addr) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+api.String()+"/v1/vault", bytes.NewReader(mustIdentityRequest(t)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	identity := func(api net.Addr) []byte {
		t.Helper()
		code, b := identityAt(api)
		if code != 200 {
			t.Fatalf("identity at %s: %d %s", api, code, b)
		}
		return b
	}
	// Placed by h2 on a-main (both empty: the first name), served there
	// through h2 and h1 alike.
	viaH2, viaH1 := identity(api2), identity(api1)
	var s1, s2 protocol.SignedIdentity
	if protocol.Decode(viaH1, protocol.TypeIdentity, &s1) != nil || protocol.Decode(viaH2, protocol.TypeIdentity, &s2) != nil || !bytes.Equal(s1.Body, s2.Body) {
		t.Fatal("alice saw two different vaults")
	}
	list := cmd("device", "list", "-db", db)
	// One account; the records and capacity its vault signed (a
	// software vault's 256 MiB store holds far fewer than the default).
	row := regexp.MustCompile(`a-main\s+h1\s+active\s+1\s+(\d+)\s+(\d+)\s+\d+/-\s+true`).FindStringSubmatch(list)
	if row == nil || !regexp.MustCompile(`b-other\s+h2\s+active\s+0\s`).MatchString(list) {
		t.Fatalf("device list:\n%s", list)
	}
	if records, _ := strconv.ParseUint(row[1], 10, 64); records == 0 {
		t.Fatalf("device list shows no record on a-main, whose vault holds its identity:\n%s", list)
	}
	if capacity, _ := strconv.ParseUint(row[2], 10, 64); capacity == 0 || capacity >= state.DefaultCapacity {
		t.Fatalf("device list shows a capacity of %d for a software vault:\n%s", capacity, list)
	}
	cmd("device", "drain", "-db", db, "a-main")
	var errOut bytes.Buffer
	err := run(ctx, []string{"device", "retire", "-db", db, "a-main"}, env(nil), io.Discard, &errOut, nil)
	if err == nil || !strings.Contains(err.Error(), "cofferd device evacuate a-main") {
		t.Fatalf("retired with alice on it: %v", err)
	}
	// Evacuation: refused for an active device, which would keep taking
	// new accounts; a drained one is emptied, and can then retire.
	err = run(ctx, []string{"device", "evacuate", "-db", db, "b-other"}, env(nil), io.Discard, io.Discard, nil)
	if !errors.Is(err, state.ErrDeviceState) {
		t.Fatalf("evacuated the active b-other: %v", err)
	}
	if out := cmd("device", "evacuate", "-db", db, "a-main"); !strings.Contains(out, "a-main: accounts taken off: 1.") {
		t.Fatalf("device evacuate:\n%s", out)
	}
	cmd("device", "retire", "-db", db, "a-main")
	cmd("device", "limits", "-db", db, "-capacity", "5", "-anchor-budget", "1000", "b-other")
	var devs []struct {
		Name, Host, State  string
		Accounts, Capacity uint64
		AnchorBudget       uint64
	}
	if err := json.Unmarshal([]byte(cmd("device", "list", "-db", db, "-json")), &devs); err != nil || len(devs) != 2 ||
		devs[0].State != "retired" || devs[1].Capacity != 5 || devs[1].AnchorBudget != 1000 {
		t.Fatalf("device list -json: %+v %v", devs, err)
	}
	// alice's next request places her on b-other, through h1.
	time.Sleep(1100 * time.Millisecond) // the hosts' one-second cache of the account
	identity(api1)
	if !strings.Contains(cmd("account", "list", "-db", db), "b-other") {
		t.Fatal("alice not placed again on b-other")
	}

	// The hosts and their keys; removing h2 revokes its certificate and
	// stops serving its devices' users.
	hosts := cmd("host", "list", "-db", db)
	if !regexp.MustCompile(`h1\s+https://127\.0\.0\.1:\d+\s+\S+\s+[0-9a-f]{64}\s+false\s+0`).MatchString(hosts) ||
		!regexp.MustCompile(`h2\s+https://\S+\s+\S+\s+[0-9a-f]{64}\s+false\s+1`).MatchString(hosts) {
		t.Fatalf("host list:\n%s", hosts)
	}
	if err := run(ctx, []string{"host", "remove", "-db", db, "h2"}, env(nil), io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("removed h2 with alice on it: %v", err)
	}
	cmd("host", "remove", "-db", db, "-force", "h2")
	if !regexp.MustCompile(`h2\s+.*\strue\s+1`).MatchString(cmd("host", "list", "-db", db)) {
		t.Fatal("h2 not listed as removed")
	}
	eventually(t, "alice refused as on a removed host", func() bool {
		code, b := identityAt(api1)
		return code == http.StatusServiceUnavailable && strings.Contains(string(b), "host removed")
	})
}

// commands returns a runner of cofferd commands that must succeed, which
// returns their output.
func commands(t *testing.T) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), args, env(nil), &out, io.Discard, nil); err != nil {
			t.Fatalf("cofferd %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
}

// A plain http:// -peer-url would send accounts' requests in the clear
// with no peer check: cofferd refuses to start with one.
func TestPlainPeerURLRefused(t *testing.T) {
	e := env(map[string]string{"COFFERD_VAULT": "unix:" + filepath.Join(t.TempDir(), "none.sock")})
	for _, u := range []string{"http://10.0.0.2:8421", "10.0.0.2:8421", "https://"} {
		err := run(context.Background(), []string{"-db", "memory:", "-host", "h1", "-peer-url", u}, e, io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "-peer-url") {
			t.Errorf("-peer-url %s: %v", u, err)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:secret@db/c",
		"postgres://u@db/c?password=secret",
		"postgresql://u@db/c?sslmode=verify-full&password=secret",
		"host=db password=secret dbname=c",
		"host=db password = 'sec ret' dbname=c",
		`password='se\'cret' host=db`,
		"password=secret",
		"postgres://u:secret@db/c?%zz",
	} {
		got := redactDSN(dsn)
		if strings.Contains(got, "secret") || strings.Contains(got, "ret'") {
			t.Errorf("redactDSN(%q) = %q", dsn, got)
		}
	}
	for _, dsn := range []string{"sqlite:/var/lib/cofferd/cofferd.db", "host=db dbname=c user=u"} {
		if got := redactDSN(dsn); got != dsn {
			t.Errorf("redactDSN(%q) = %q, want it as it is", dsn, got)
		}
	}
}

// migrated makes a SQLite state file in dir, migrated, and returns its DSN.
func migrated(t *testing.T, dir string) string {
	t.Helper()
	db := "sqlite:" + filepath.Join(dir, "state.db")
	if err := run(context.Background(), []string{"migrate", "-db", db}, env(nil), io.Discard, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	return db
}

// device limits sets only the limits it is given: setting the capacity
// keeps the anchor budget, and the reverse.
func TestDeviceLimitsKeepsTheOther(t *testing.T) {
	ctx := context.Background()
	db := "sqlite:" + filepath.Join(t.TempDir(), "state.db")
	cmd := commands(t)
	cmd("migrate", "-db", db)
	st, err := state.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.RegisterDevice(ctx, "vault0", "h1"); err != nil {
		t.Fatal(err)
	}
	limits := func() (uint64, uint64) {
		t.Helper()
		d, err := st.Device(ctx, "vault0")
		if err != nil {
			t.Fatal(err)
		}
		return d.Capacity, d.AnchorBudget
	}
	cmd("device", "limits", "-db", db, "-capacity", "5", "-anchor-budget", "1000", "vault0")
	cmd("device", "limits", "-db", db, "-capacity", "7", "vault0")
	if c, b := limits(); c != 7 || b != 1000 {
		t.Fatalf("after -capacity 7: capacity %d, anchor budget %d; want 7, 1000", c, b)
	}
	cmd("device", "limits", "-db", db, "-anchor-budget", "2000", "vault0")
	if c, b := limits(); c != 7 || b != 2000 {
		t.Fatalf("after -anchor-budget 2000: capacity %d, anchor budget %d; want 7, 2000", c, b)
	}
	if err := run(ctx, []string{"device", "limits", "-db", db, "vault0"}, env(nil), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("device limits with no limit given succeeded")
	}
}

// A bare PATH.db is a SQLite -db (state.ParseDSN) like sqlite:PATH: the
// daemon's files and declare-rollback's default go beside it, not to the
// working folder.
func TestBareSQLitePath(t *testing.T) {
	dir := t.TempDir()
	for dsn, want := range map[string]string{
		filepath.Join(dir, "state.db"):             dir,
		"sqlite:" + filepath.Join(dir, "state.db"): dir,
		"postgres://h/db":                          ".",
		"memory:":                                  ".",
	} {
		if got := stateDir(dsn); got != want {
			t.Errorf("stateDir(%q) = %q, want %q", dsn, got, want)
		}
	}
	commands(t)("vault", "declare-rollback", "-db", filepath.Join(dir, "state.db"), "-reason", "restored from last night's copy")
	if _, err := os.Stat(host.DefaultRollbacksPath(filepath.Join(dir, "state.db"))); err != nil {
		t.Fatalf("declaration not beside the bare -db: %v", err)
	}
}

// brokenListener is a listener whose Accept fails for good once broken is
// closed.
type brokenListener struct {
	net.Listener
	broken chan struct{}
}

func (l brokenListener) Accept() (net.Conn, error) {
	<-l.broken
	return nil, errors.New("listener broken")
}

// When one of the daemon's servers stops with an error (here its metrics
// listener fails), the daemon stops the others and exits with that error,
// instead of waiting for them for ever.
func TestServeStopsWhenOneListenerFails(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "state.db")
	commands(t)("migrate", "-db", db)
	broken := make(chan struct{})
	var calls int
	old := listenTCP
	t.Cleanup(func() { listenTCP = old })
	listenTCP = func(network, addr string) (net.Listener, error) {
		ln, err := old(network, addr)
		if calls++; calls == 2 && err == nil { // the API's, then the metrics'
			ln = brokenListener{ln, broken}
		}
		return ln, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	var logs syncbuf.Buffer
	go func() {
		done <- run(ctx, []string{"-db", db, "-host", "h1", "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0", "-allow-insecure-vault",
			"-vault", "vault0=unix:" + softVault(t, dir), "-realms", filepath.Join(dir, "realms"), "-rollbacks", filepath.Join(dir, "rollbacks.json")},
			env(nil), io.Discard, &logs, func(_, _ net.Addr) { ready <- struct{}{} })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("exited: %v\n%s", err, logs.String())
	}
	close(broken)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listener broken") {
			t.Fatalf("exited with %v, want the listener's error", err)
		}
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the daemon still serves 10 s after its metrics listener failed")
	}
}

// An accounts file of cofferd before its state database imports before any
// host ran: the devices it names, and the default device, are registered
// under -host, and accounts on no device go to the default device (where
// the old cofferd served them: its first device, vault0 by default).
func TestMigrateImportsAccountsFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "state.db")
	file := filepath.Join(dir, "accounts.json")
	tokA, tokB := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`{"version":1,"accounts":[
		{"name":"alice","user_id":"aa","device":"vault0","token_sha256":"%x","created":"2026-01-02T03:04:05Z"},
		{"name":"bob","user_id":"bb","token_sha256":"%x","created":"2026-01-03T00:00:00Z"}]}`, tokA, tokB)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := commands(t)("migrate", "-db", db, "-import-accounts", file, "-host", "h1")
	if !strings.Contains(out, "imported 2 accounts") {
		t.Fatalf("migrate:\n%s", out)
	}
	st, err := state.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, n := range []string{"alice", "bob"} {
		if a, err := st.AccountByName(ctx, n); err != nil || a.Device != "vault0" {
			t.Fatalf("%s on %q (%v), want vault0", n, a.Device, err)
		}
	}
	if d, err := st.Device(ctx, "vault0"); err != nil || d.Host != "h1" || d.Accounts != 2 {
		t.Fatalf("vault0: %+v %v", d, err)
	}
	// -host is needed: the devices are registered under it.
	if err := run(ctx, []string{"migrate", "-db", db, "-import-accounts", file}, env(nil), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("imported with no -host")
	}
}
