package host

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/host/state"
)

// NewAccount draws a 32-byte token, stores only its SHA-256, draws a
// 16-byte user id and refuses names and devices the store refuses.
func TestNewAccount(t *testing.T) {
	ctx := context.Background()
	st := state.NewMemory()
	if err := st.RegisterDevice(ctx, "armory1", "local"); err != nil {
		t.Fatal(err)
	}
	a, token, err := NewAccount(ctx, st, "alice", "armory1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 bytes of base64url", token)
	}
	if a.TokenSHA256 != sha256.Sum256(raw) || len(a.UserID) != UserIDSize || a.Device != "armory1" {
		t.Fatalf("account %+v", a)
	}
	if got, err := st.AccountByToken(ctx, sha256.Sum256(raw)); err != nil || got.Name != "alice" || got.Device != "armory1" {
		t.Fatalf("stored: %+v %v", got, err)
	}
	if _, _, err := NewAccount(ctx, st, "alice", ""); err == nil {
		t.Fatal("a second alice was added")
	}
	for _, bad := range []string{"", "-x", "a b", strings.Repeat("a", 65), "ä"} {
		if _, _, err := NewAccount(ctx, st, bad, ""); err == nil {
			t.Fatalf("account name %q accepted", bad)
		}
	}
	if _, _, err := NewAccount(ctx, st, "bob", "bad device!"); err == nil {
		t.Fatal("bad device name accepted")
	}
	if _, _, err := NewAccount(ctx, st, "bob", "nowhere"); err == nil {
		t.Fatal("an unregistered device accepted")
	}
	b, _, err := NewAccount(ctx, st, "bob", "")
	if err != nil || string(b.UserID) == string(a.UserID) {
		t.Fatalf("bob: %v (user id shared: %v)", err, string(b.UserID) == string(a.UserID))
	}
}

// A token never begins with '-', which a command line would read as an
// option (coffer config set token TOKEN). One random token in 64 would:
// the chance that none of 2000 does is below 1e-13.
func TestTokensNeverLookLikeOptions(t *testing.T) {
	ctx := context.Background()
	st := state.NewMemory()
	for i := range 2000 {
		_, token, err := NewAccount(ctx, st, fmt.Sprintf("user%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(token, "-") {
			t.Fatalf("account %d's token begins with '-'", i)
		}
	}
}

// countingStore counts the token lookups that reach the store.
type countingStore struct {
	state.Store
	byToken atomic.Int64
}

func (c *countingStore) AccountByToken(ctx context.Context, sum [sha256.Size]byte) (Account, error) {
	c.byToken.Add(1)
	return c.Store.AccountByToken(ctx, sum)
}

// A login's requests come within a second: the token is looked up in the
// store once, and a removed account stops working within a second. Only
// tokens of the right size are looked up at all.
func TestAuthenticationCache(t *testing.T) {
	mem, _, tokens := testAccounts(t, "alice")
	st := &countingStore{Store: mem}
	s, _ := testServer(t, Config{Devices: []Device{newStub("stub")}, Store: st})
	ctx := context.Background()
	for range 3 {
		if a, err := s.lookupToken(ctx, tokens["alice"]); err != nil || a.Name != "alice" {
			t.Fatalf("alice: %+v %v", a, err)
		}
	}
	if n := st.byToken.Load(); n != 1 {
		t.Fatalf("three lookups within a second reached the store %d times", n)
	}
	for _, bad := range []string{tokens["alice"] + "A", tokens["alice"][:42], "", strings.Repeat("A", 4000)} {
		if _, err := s.lookupToken(ctx, bad); !errors.Is(err, errUnknownToken) {
			t.Fatalf("token of %d characters: %v", len(bad), err)
		}
	}
	if n := st.byToken.Load(); n != 1 {
		t.Fatalf("tokens of the wrong size reached the store (%d lookups)", n)
	}
	if err := mem.RemoveAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(authCacheTTL + 100*time.Millisecond)
	if _, err := s.lookupToken(ctx, tokens["alice"]); !errors.Is(err, errUnknownToken) {
		t.Fatalf("a removed account still authenticates after %v: %v", authCacheTTL, err)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"10/m": 10.0 / 60, "1/s": 1, "3600/h": 1, "0": 0, "off": 0, "0.5/s": 0.5} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"10", "10/d", "x/m", "-1/s", "Inf/s"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestRetryAfterRounding(t *testing.T) {
	if retryAfter(time.Millisecond) != "1" || retryAfter(1500*time.Millisecond) != "2" || retryAfter(0) != "1" {
		t.Fatal("retryAfter rounding")
	}
}

func TestParseDeviceSpecs(t *testing.T) {
	got, err := ParseDeviceSpecs("unix:/run/v0.sock, a=unix:/run/v.sock,serial:auto, b=serial:/dev/ttyACM1,unix:/var/lib/x")
	if err != nil {
		t.Fatal(err)
	}
	want := []DeviceSpec{
		{"vault0", "unix", "/run/v0.sock"}, {"a", "unix", "/run/v.sock"}, {"vault2", "serial", "auto"},
		{"b", "serial", "/dev/ttyACM1"}, {"vault4", "unix", "/var/lib/x"},
	}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("spec %d: %v, want %v", i, got[i], want[i])
		}
	}
	// soft[:DIR], the in-process software vault, is gone: cofferd links no
	// vault code, and the software vault is its own process (unix:PATH).
	for _, bad := range []string{"", "tcp:1.2.3.4:5", "unix:", "serial", "a=unix:x,a=unix:y", "bad name=unix:x", "soft", "soft:/var/lib/x"} {
		if _, err := ParseDeviceSpecs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
