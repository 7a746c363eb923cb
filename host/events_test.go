package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// logLines decodes a JSON log into its records.
func logLines(t *testing.T, text string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// linesWith returns the records whose msg is msg.
func linesWith(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// wantFields fails unless rec has each field with the value given (as
// JSON decodes it: strings, float64 numbers).
func wantFields(t *testing.T, rec map[string]any, fields map[string]any) {
	t.Helper()
	for k, v := range fields {
		if rec[k] != v {
			t.Errorf("log field %s = %#v, want %#v (record %v)", k, rec[k], v, rec)
		}
	}
}

// TestRateLimitsAndLockoutsAreLogged: a login start refused by the rate
// limit and a login start that finds the account locked each leave one
// line in cofferd's log at its default level, saying who (client address,
// account, a hash of the user id), what and for how long, and nothing
// secret: no token, password, backup key or request body in any spelling.
// Repeats within a minute are counted on the next line, not logged one by
// one.
func TestRateLimitsAndLockoutsAreLogged(t *testing.T) {
	ctx := context.Background()
	inst, pub, _ := softVault(t)
	accounts, accts, tokens := testAccounts(t, "alice", "bob")
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var logs syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	_, hs := testServer(t, Config{Devices: []Device{NewSoftDevice("soft", inst.Vault)}, Store: accounts,
		LoginRate: 1.0 / 60, LoginBurst: 3, Now: clock, Log: log})
	userHash := func(a Account) string {
		sum := sha256.Sum256(a.UserID)
		return hex.EncodeToString(sum[:8])
	}

	// Alice is guessed to lockout: limit 2, two wrong passwords, then her
	// right one finds the key erased. That was her burst of 3 login
	// starts: the fourth is refused.
	password := []byte("alice's right password, unmistakable")
	wrong := []byte("a wrong guess, also unmistakable")
	key := bytes.Repeat([]byte{0x5c}, 32)
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(ctx, password, key, 2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := alice.Login(ctx, wrong); !errors.Is(err, testclient.ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if len(linesWith(logLines(t, logs.String()), "account locked")) != 0 {
		t.Fatal("a lockout was logged before any login found the account locked")
	}
	ke1s := [][]byte{}
	loginStartBody := func(c *testclient.Client) []byte {
		b := loginStart(t, c.UserID)
		ke1s = append(ke1s, b)
		return b
	}
	if _, r, err := alice.Login(ctx, password); !errors.Is(err, testclient.ErrWrongPassword) || r.Kind != protocol.ReceiptLocked {
		t.Fatalf("login after the lockout: %v, %+v", err, r)
	}
	_, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], loginStartBody(alice))
	if statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("fifth login start: %v", err)
	}

	lines := logLines(t, logs.String())
	locked := linesWith(lines, "account locked")
	if len(locked) != 1 {
		t.Fatalf("%d lockout lines, want 1:\n%s", len(locked), logs.String())
	}
	wantFields(t, locked[0], map[string]any{"level": "WARN", "account": "alice", "user_id_hash": userHash(accts["alice"]),
		"device": "soft", "lock": "erased", "limit": float64(2), "failed_since_success": float64(2), "repeats": float64(1)})
	if c, _ := locked[0]["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
		t.Errorf("lockout line's client = %q, want the client's address", c)
	}
	limited := linesWith(lines, "request rate-limited")
	if len(limited) != 1 {
		t.Fatalf("%d rate-limit lines, want 1:\n%s", len(limited), logs.String())
	}
	wantFields(t, limited[0], map[string]any{"level": "INFO", "account": "alice", "user_id_hash": userHash(accts["alice"]),
		"limited": "login-start", "retry_after_seconds": float64(60), "rate_per_minute": float64(1), "burst": float64(3), "repeats": float64(1)})
	if c, _ := limited[0]["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
		t.Errorf("rate-limit line's client = %q, want the client's address", c)
	}

	// More refusals within the minute are counted, not logged one by one;
	// the first after the minute says how many there were.
	bob := userClient(t, hs.URL, tokens["bob"], accts["bob"], pub)
	for range 3 {
		if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], loginStartBody(alice)); statusOf(err) != http.StatusTooManyRequests {
			t.Fatalf("login start within the minute: %v", err)
		}
	}
	if n := len(linesWith(logLines(t, logs.String()), "request rate-limited")); n != 1 {
		t.Fatalf("%d rate-limit lines after four refusals within a minute, want 1", n)
	}
	advance(30 * time.Second)
	for range 3 { // bob's own burst, then one refused: another account's line
		if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["bob"], loginStartBody(bob)); err != nil {
			t.Fatalf("bob's login start: %v", err)
		}
	}
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["bob"], loginStartBody(bob)); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("bob's fourth login start: %v", err)
	}
	advance(31 * time.Second)
	if _, r, err := alice.Login(ctx, password); !errors.Is(err, testclient.ErrWrongPassword) || r.Kind != protocol.ReceiptLocked {
		t.Fatalf("alice's login a minute on: %v, %+v", err, r)
	}
	if _, err := post(ctx, http.DefaultClient, hs.URL, tokens["alice"], loginStartBody(alice)); statusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("alice's second login start a minute on: %v", err)
	}
	lines = logLines(t, logs.String())
	limited = linesWith(lines, "request rate-limited")
	if len(limited) != 3 {
		t.Fatalf("%d rate-limit lines, want 3 (alice, bob, alice again):\n%s", len(limited), logs.String())
	}
	wantFields(t, limited[1], map[string]any{"account": "bob", "user_id_hash": userHash(accts["bob"]), "repeats": float64(1)})
	wantFields(t, limited[2], map[string]any{"account": "alice", "repeats": float64(4)})
	if len(linesWith(lines, "account locked")) != 2 {
		t.Fatalf("alice's login start a minute on found her locked again, but was not logged:\n%s", logs.String())
	}

	// Nothing secret, in any spelling: tokens, passwords, the key, the
	// request bodies.
	secrets := map[string][]byte{}
	for name, s := range map[string][]byte{"alice's token": []byte(tokens["alice"]), "bob's token": []byte(tokens["bob"]),
		"password": password, "wrong password": wrong, "backup key": key} {
		secrets[name] = s
		secrets[name+" (hex)"] = []byte(hex.EncodeToString(s))
		secrets[name+" (base64)"] = []byte(base64.StdEncoding.EncodeToString(s))
	}
	for name, tok := range tokens {
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		sum := sha256.Sum256(raw)
		secrets[name+"'s token bytes (hex)"] = []byte(hex.EncodeToString(raw))
		secrets[name+"'s token hash (hex)"] = []byte(hex.EncodeToString(sum[:]))
	}
	for i, b := range ke1s {
		secrets["login start body "+string(rune('a'+i))] = b
		secrets["login start body (hex) "+string(rune('a'+i))] = []byte(hex.EncodeToString(b))
	}
	if found := hasAny([]byte(logs.String()), secrets); len(found) > 0 {
		t.Fatalf("cofferd's log holds %v", found)
	}
}
