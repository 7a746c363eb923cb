package host

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/host/state"
)

// The operator's rollback declarations reach exactly the accounts of the
// device they name, newest last and at most 10, through an authenticated
// GET /v1/rollbacks that cofferd answers from the file as it is at each
// request; a reason that could fake output on a user's terminal is
// refused when declared and when served.
func TestRollbackDeclarations(t *testing.T) {
	dir := t.TempDir()
	accountsPath := filepath.Join(dir, "accounts.json")
	rollbacks := DefaultRollbacksPath(accountsPath)
	if rollbacks != filepath.Join(dir, "cofferd-rollbacks.json") {
		t.Fatalf("default rollbacks file %s", rollbacks)
	}
	accounts := state.NewMemory()
	_, tokens := addAccounts(t, accounts, "a", "alice")
	_, bob := addAccounts(t, accounts, "b", "bob")
	tokens["bob"] = bob["bob"]
	if err := CreateRollbacksFile(rollbacks); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	first, hs := testServer(t, Config{Devices: []Device{newStub("a"), newStub("b")}, Store: accounts, Rollbacks: rollbacks,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	declarations := func(who string) RollbacksInfo {
		t.Helper()
		resp, b := get(t, hs.URL+"/v1/rollbacks", tokens[who])
		var info RollbacksInfo
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || json.Unmarshal(b, &info) != nil {
			t.Fatalf("GET /v1/rollbacks as %s: %d %s", who, resp.StatusCode, b)
		}
		return info
	}
	if resp, _ := get(t, hs.URL+"/v1/rollbacks", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", resp.StatusCode)
	}
	if info := declarations("alice"); info.Device != "a" || info.Declarations == nil || len(info.Declarations) != 0 {
		t.Fatalf("before any declaration: %+v", info)
	}

	for _, bad := range []string{"", "   ", "restored\nFAKE: all is well", "\x1b[2Jcleared", "evil \u202e reversed",
		strings.Repeat("x", MaxRollbackReason+1), "not utf-8 \xff"} {
		if _, err := DeclareRollback(rollbacks, "a", bad, time.Now()); err == nil {
			t.Errorf("declared with the reason %q", bad)
		}
	}
	if _, err := DeclareRollback(rollbacks, "../a", "restored", time.Now()); err == nil {
		t.Error("declared for a device name that is not one")
	}
	when := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	for i := range 11 {
		if _, err := DeclareRollback(rollbacks, "a", "restored from the backup of "+strings.Repeat("I", i+1), when.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := DeclareRollback(rollbacks, "b", "store lost: disk died; records of b gone", when); err != nil {
		t.Fatal(err)
	}
	a := declarations("alice")
	if a.Device != "a" || len(a.Declarations) != 10 || a.Declarations[9].Reason != "restored from the backup of "+strings.Repeat("I", 11) ||
		!a.Declarations[9].DeclaredAt.Equal(when.Add(10*time.Minute)) || a.Declarations[0].Reason != "restored from the backup of II" {
		t.Fatalf("alice was served %+v", a)
	}
	if b := declarations("bob"); b.Device != "b" || len(b.Declarations) != 1 || !strings.HasPrefix(b.Declarations[0].Reason, "store lost") {
		t.Fatalf("bob was served %+v", b)
	}

	// A declaration for a device that is not configured reaches nobody:
	// cofferd says so at start.
	if _, err := DeclareRollback(rollbacks, "vault9", "restored (a typo for vault0)", when); err != nil {
		t.Fatal(err)
	}
	var startLog syncbuf.Buffer
	// (Another realm: the first server still holds host "local" in this one.)
	testServer(t, Config{Devices: []Device{newStub("a"), newStub("b")}, Store: state.NewMemory(), Rollbacks: rollbacks,
		Log: slog.New(slog.NewTextHandler(&startLog, nil))})
	if !strings.Contains(startLog.String(), "rollback declaration for a device that is not configured") || !strings.Contains(startLog.String(), "device=vault9") {
		t.Fatalf("start log:\n%s", startLog.String())
	}

	// A file edited by hand into something a terminal would obey is not
	// served; cofferd says why in its log.
	b, err := os.ReadFile(rollbacks)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rollbacks, []byte(strings.Replace(string(b), "store lost", `store lost\u001b[2J`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, hs.URL+"/v1/rollbacks", tokens["alice"]); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("a file with an escape in a reason: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "rollbacks file unreadable") {
		t.Fatalf("not logged:\n%s", logs.String())
	}

	// Without a rollbacks file configured, the endpoint says so (the same
	// host, restarted: the first process stops first).
	hs.Close()
	first.Close()
	_, plain := testServer(t, Config{Devices: []Device{newStub("a")}, Store: accounts})
	if resp, _ := get(t, plain.URL+"/v1/rollbacks", tokens["alice"]); resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("without a rollbacks file: %d", resp.StatusCode)
	}
}

// FuzzRollbacksFile: the rollbacks file's decoder never panics, and what
// it accepts is what cofferd serves: valid device names, reasons a terminal
// prints as they are, a time for each.
func FuzzRollbacksFile(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"declarations":[]}`,
		`{"version":1,"declarations":[{"device":"vault0","declared_at":"2026-12-01T09:30:00Z","reason":"restored"}]}`,
		`{"version":1,"declarations":[{"device":"vault0","declared_at":"2026-12-01T09:30:00Z","reason":"a\u001bb"}]}`,
		`{"version":2,"declarations":[]}`, `{"version":1,"declarations":[{"device":"../x","declared_at":"2026-12-01T09:30:00Z","reason":"r"}]}`,
		`{"version":1,"extra":1}`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rf, err := decodeRollbacks("f", b)
		if err != nil {
			return
		}
		for _, d := range rf.Declarations {
			if !deviceNameRE.MatchString(d.Device) || CheckRollbackReason(d.Reason) != nil || d.DeclaredAt.IsZero() {
				t.Fatalf("accepted %+v", d)
			}
		}
	})
}
