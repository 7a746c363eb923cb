package state

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// The accounts file parser accepts only what every store would store: valid
// names, user ids of 1 to 64 bytes, 32-byte token hashes, nothing twice.
func FuzzParseAccountsJSON(f *testing.F) {
	tok := fmt.Sprintf("%x", sha256.Sum256(nil))
	f.Add([]byte(`{"version":1,"accounts":[]}`))
	f.Add([]byte(`{"version":1,"accounts":[{"name":"alice","user_id":"00ff","device":"vault-1","token_sha256":"` + tok + `","created":"2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"version":1,"accounts":[{"name":"a","user_id":"01","token_sha256":"` + tok + `"},{"name":"b","user_id":"02","token_sha256":"` + tok + `"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"accounts":[{"name":"f.bob","user_id":"01","token_sha256":"` + tok + `"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		accounts, err := parseAccountsJSON(b, "fuzz")
		if err != nil {
			return
		}
		names, users, tokens := map[string]bool{}, map[string]bool{}, map[[32]byte]bool{}
		for _, a := range accounts {
			if err := CheckAccount(a); err != nil {
				t.Fatalf("accepted %+v: %v", a, err)
			}
			if IsFrontName(a.Name) {
				t.Fatalf("accepted the token account %q in the fronted namespace", a.Name)
			}
			if names[a.Name] || users[string(a.UserID)] || tokens[a.TokenSHA256] {
				t.Fatalf("accepted %q twice", a.Name)
			}
			names[a.Name], users[string(a.UserID)], tokens[a.TokenSHA256] = true, true, true
		}
	})
}
