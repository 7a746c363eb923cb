package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// The refused set knows a password in any Unicode normalization (OPAQUE
// gets it in NFC, so "é" typed precomposed or decomposed is one password),
// keeps no password and no unkeyed hash, and forgets everything when wiped.
func TestRefusedSet(t *testing.T) {
	r, err := newRefusedSet()
	if err != nil {
		t.Fatal(err)
	}
	pw := []byte("caf\u00e9")
	r.add(pw)
	if !r.has([]byte("cafe\u0301")) || !r.has(pw) || r.has([]byte("cafe")) || r.has(nil) {
		t.Fatal("the refused set does not match the NFC password exactly")
	}
	other, _ := newRefusedSet()
	if bytes.Equal(r.sum(pw), other.sum(pw)) {
		t.Fatal("two runs hash a password alike: the hash is not keyed per run")
	}
	for _, h := range r.hashes {
		if bytes.Contains(h, pw) {
			t.Fatal("the set keeps the password")
		}
	}
	key, hashes := r.key, r.hashes
	r.wipe()
	if !bytes.Equal(key, make([]byte, len(key))) || !bytes.Equal(hashes[0], make([]byte, len(hashes[0]))) || r.has(pw) {
		t.Fatal("wipe left the key or a hash")
	}
}

// Against a vault (or cofferd) older than the user status, `coffer status`
// says the count is not offered and shows none; a count that does not
// verify fails the check, and is not shown either.
func TestStatusWithoutAUserStatus(t *testing.T) {
	host := fakehost.New(t, fakehost.Options{Insecure: true})
	e := passwordEnv(t, host, true)
	host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeUserStatus {
			return false
		}
		w.Write(protocol.EncodeError(protocol.Errorf(protocol.CodeMalformed, "unknown message type 10")))
		return true
	})
	r := e.ok("status")
	if strings.Contains(r.stdout, "tries left now") || !strings.Contains(r.stderr, "does not give a count of tries") {
		t.Fatalf("status against an older vault:\n%s\n%s", r.stdout, r.stderr)
	}
	host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeUserStatus {
			return false
		}
		w.Write(host.Vault(r.Context(), body)[:40])
		return true
	})
	r = e.fails("vault check failed", "status")
	if strings.Contains(r.stdout, "tries left now") {
		t.Fatalf("a garbled count was shown:\n%s", r.stdout)
	}
}
