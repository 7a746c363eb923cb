package host

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/internal/filelock"
)

// An Account is a name, the vault user id cofferd drew for it, the device
// it is placed on ("" until its first request places it) and the SHA-256
// of its bearer token, as the state store keeps it (host/state). The token
// itself is shown once, by NewAccount, and never stored.
type Account = state.Account

// UserIDSize is the size of the user ids cofferd draws for new accounts.
const UserIDSize = 16

// tokenSize is the number of random bytes in a bearer token. Only tokens
// of exactly this size are looked up.
const tokenSize = 32

// NewAccount creates an account in st, placed on device at once if device
// is not "" (the device must be registered and active), and returns it with
// its bearer token, which is stored nowhere: only its SHA-256 is.
func NewAccount(ctx context.Context, st state.Store, name, device string) (Account, string, error) {
	if state.IsFrontName(name) {
		// A token account there would be the fronted user's (front.go).
		return Account{}, "", fmt.Errorf("account %q: names starting %q are reserved for the users the messenger names on the front listener", name, state.FrontPrefix)
	}
	raw, token, err := drawToken()
	if err != nil {
		return Account{}, "", err
	}
	a := Account{Name: name, Device: device, TokenSHA256: sha256.Sum256(raw), Created: time.Now().UTC().Truncate(time.Second)}
	clear(raw)
	for try := 0; ; try++ {
		a.UserID = make([]byte, UserIDSize)
		if _, err := rand.Read(a.UserID); err != nil {
			return Account{}, "", err
		}
		err := st.AddAccount(ctx, a)
		if err == nil {
			return a, token, nil
		}
		// ErrExists for a name that is free was a user id drawn twice
		// (or, less likely still, a token): draw again.
		if !errors.Is(err, state.ErrExists) || try == 2 {
			return Account{}, "", err
		}
		if _, e := st.AccountByName(ctx, name); e == nil {
			return Account{}, "", fmt.Errorf("account %q exists", name)
		}
	}
}

// drawToken draws a bearer token and returns its random bytes and its
// base64url spelling. The spelling never begins with '-': a token is
// handed to command lines (coffer config set token TOKEN), where a leading
// '-' reads as an option, and one token in 64 would begin with it.
// Drawing again costs less than 0.03 of the token's 256 bits.
func drawToken() ([]byte, string, error) {
	raw := make([]byte, tokenSize)
	for {
		if _, err := rand.Read(raw); err != nil {
			return nil, "", err
		}
		if token := base64.RawURLEncoding.EncodeToString(raw); token[0] != '-' {
			return raw, token, nil
		}
	}
}

type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// writeFileAtomic replaces path atomically: a temporary file in the same
// folder, mode 0600, synced, renamed over the old one, and the folder
// synced, so a crash leaves the old file or the new one, never a torn one.
// When the old file exists and belongs to another user (the daemon's
// DynamicUser, while an admin runs `cofferd vault declare-rollback` as
// root), the new one keeps its owner so that the daemon can still read it.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	keepOwner(tmp, path)
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
}

// syncDir makes a rename or removal in dir durable (best effort: some
// filesystems refuse to sync a folder).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// underLock runs fn holding the advisory lock of the file at path
// (path.lock), which every command that rewrites the file takes.
func underLock(path string, fn func() error) error {
	unlock, err := filelock.Lock(path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// createOnce runs write, under path's lock, if there is no file at path.
func createOnce(path string, write func() error) error {
	return underLock(path, func() error {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return write()
	})
}
