package state

import (
	"strings"
	"testing"
)

// Every store keeps a fronted user's account under its longest name
// (FrontPrefix and 64 characters) and refuses one longer, or a name over
// 64 characters outside the fronted namespace.
func TestFrontAccountNames(t *testing.T) {
	id := strings.Repeat("u", 64)
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		a := account(1)
		a.Name = FrontPrefix + id
		mustOK(t, st.AddAccount(ctx, a))
		got, err := peer().AccountByName(ctx, a.Name)
		mustOK(t, err)
		sameAccount(t, got, a)
		for _, bad := range []string{FrontPrefix + id + "u", strings.Repeat("u", 65), FrontPrefix + "x:y"} {
			b := account(2)
			b.Name = bad
			if err := st.AddAccount(ctx, b); err == nil {
				t.Fatalf("account %q stored", bad)
			}
		}
	})
}

// The accounts file import, which makes token accounts, refuses a name in
// the fronted namespace: that token account would be the fronted user's.
func TestImportRefusesFrontNames(t *testing.T) {
	tok := strings.Repeat("ab", 32)
	_, err := parseAccountsJSON([]byte(`{"version":1,"accounts":[{"name":"f.bob","user_id":"01","token_sha256":"`+tok+`"}]}`), "accounts.json")
	if err == nil || !strings.Contains(err.Error(), "f.bob") {
		t.Fatalf("import of f.bob: %v", err)
	}
	if _, err := parseAccountsJSON([]byte(`{"version":1,"accounts":[{"name":"bob","user_id":"01","token_sha256":"`+tok+`"}]}`), "accounts.json"); err != nil {
		t.Fatalf("import of bob: %v", err)
	}
}
