package client

import (
	"bytes"
	"context"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
)

// TestTheCallersPasswordIsLeftAlone: the library wipes the copy of the
// password it works on, never the caller's slice. An application that
// registers and then logs in with the same slice (or retries a login after
// a 503) must not send a zeroed password: the vault would count it as a
// wrong guess against the user. Before the fix NormalizePassword returned
// the caller's own slice for a password already in NFC (every ASCII
// password), and Register, Login and ChangePassword cleared it.
func TestTheCallersPasswordIsLeftAlone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fakehost.Options{})
	password := []byte("correct horse battery staple")
	want := bytes.Clone(password)
	k := randomKey(t)
	c := f.connect()
	if _, err := c.Register(ctx, password, k, 5); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(password, want) {
		t.Fatal("Register wiped the caller's password")
	}
	s, err := c.Login(ctx, password)
	if err != nil {
		t.Fatalf("login with the password just registered: %v", err)
	}
	if !bytes.Equal(password, want) {
		t.Fatal("Login wiped the caller's password")
	}
	next := []byte("a new password, also long")
	if _, err := s.ChangePassword(ctx, next, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(next, []byte("a new password, also long")) {
		t.Fatal("ChangePassword wiped the caller's new password")
	}
	s, err = c.Login(ctx, next)
	if err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	s.Close(ctx)
}
