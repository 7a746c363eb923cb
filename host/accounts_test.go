package host

import (
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAccountsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.json")
	a, token, err := AddAccount(path, "alice", "armory1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 bytes of base64url", token)
	}
	sum := sha256.Sum256(raw)
	if string(a.TokenSHA256) != string(sum[:]) || len(a.UserID) != UserIDSize || a.Device != "armory1" {
		t.Fatalf("account %+v", a)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), token) {
		t.Fatal("the accounts file holds the token")
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Fatalf("left %s", e.Name())
		}
	}

	if _, _, err := AddAccount(path, "alice", ""); err == nil {
		t.Fatal("a second alice was added")
	}
	for _, bad := range []string{"", "-x", "a b", strings.Repeat("a", 65), "ä"} {
		if _, _, err := AddAccount(path, bad, ""); err == nil {
			t.Fatalf("account name %q accepted", bad)
		}
	}
	if _, _, err := AddAccount(path, "bob", "bad device!"); err == nil {
		t.Fatal("bad device name accepted")
	}
	_, tokBob, err := AddAccount(path, "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	list, err := ListAccounts(path)
	if err != nil || len(list) != 2 || list[0].Name != "alice" || list[1].Name != "bob" {
		t.Fatalf("list: %v %+v", err, list)
	}
	if string(list[0].UserID) == string(list[1].UserID) {
		t.Fatal("two accounts share a user id")
	}

	loaded, err := LoadAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := loaded.Authenticate(token); !ok || got.Name != "alice" {
		t.Fatal("alice's token does not authenticate")
	}
	if _, ok := loaded.Authenticate(tokBob); !ok {
		t.Fatal("bob's token does not authenticate")
	}
	if _, ok := loaded.Authenticate(token + "A"); ok {
		t.Fatal("a longer token authenticates")
	}

	// Changes to the file reach the running daemon.
	now := time.Now()
	var mu sync.Mutex
	loaded.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var reloads []int
	loaded.OnReload = func(n int, err error) { reloads = append(reloads, n) }
	if err := RemoveAccount(path, "bob"); err != nil {
		t.Fatal(err)
	}
	_, tokCarol, err := AddAccount(path, "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if _, ok := loaded.Authenticate(tokBob); ok {
		t.Fatal("a removed account still authenticates")
	}
	if _, ok := loaded.Authenticate(tokCarol); !ok {
		t.Fatal("a new account does not authenticate")
	}
	if len(reloads) != 1 || reloads[0] != 2 {
		t.Fatalf("reloads %v", reloads)
	}
	if err := RemoveAccount(path, "nobody"); err == nil {
		t.Fatal("removed an account that does not exist")
	}

	// A damaged file keeps the accounts loaded before.
	os.WriteFile(path, []byte("{not json"), 0o600)
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	var reloadErr error
	loaded.OnReload = func(n int, err error) { reloadErr = err }
	if _, ok := loaded.Authenticate(token); !ok || reloadErr == nil {
		t.Fatalf("damaged file: alice lost (or no error reported: %v)", reloadErr)
	}
	if _, err := LoadAccounts(path); err == nil {
		t.Fatal("a damaged file loads")
	}
}

func TestAccountsFileConcurrentAdds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.json")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := AddAccount(path, "user"+string(rune('a'+i)), ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	list, err := ListAccounts(path)
	if err != nil || len(list) != 20 {
		t.Fatalf("%d accounts after 20 concurrent adds (%v)", len(list), err)
	}
}

func TestMissingAccountsFileIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.json")
	a, err := LoadAccounts(path)
	if err != nil || len(a.All()) != 0 {
		t.Fatalf("%v %v", a, err)
	}
	if err := CreateAccountsFile(path); err != nil {
		t.Fatal(err)
	}
	if l, err := ListAccounts(path); err != nil || len(l) != 0 {
		t.Fatalf("created file: %v %v", l, err)
	}
	AddAccount(path, "x", "")
	if err := CreateAccountsFile(path); err != nil {
		t.Fatal(err)
	}
	if l, _ := ListAccounts(path); len(l) != 1 {
		t.Fatal("CreateAccountsFile overwrote an existing file")
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

func TestLimiterRefills(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, 2, func() time.Time { return now })
	for i := range 2 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("burst %d refused", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over burst: %v %v", ok, wait)
	}
	if retryAfter(wait) != "1" || retryAfter(1500*time.Millisecond) != "2" || retryAfter(0) != "1" {
		t.Fatal("retryAfter rounding")
	}
	now = now.Add(time.Second)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("not refilled after 1 s")
	}
	now = now.Add(time.Hour)
	for range 2 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatal("refilled bucket refused")
		}
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("bucket holds more than its burst")
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
