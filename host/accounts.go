package host

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/internal/filelock"
)

// An account is a name, the vault user id cofferd drew for it, the device it
// is routed to ("" for the first configured device) and the SHA-256 of its
// bearer token. The token itself is shown once, by AddAccount, and never
// stored.
type Account struct {
	Name        string    `json:"name"`
	UserID      hexBytes  `json:"user_id"`
	Device      string    `json:"device,omitempty"`
	TokenSHA256 hexBytes  `json:"token_sha256"`
	Created     time.Time `json:"created"`
}

// UserIDSize is the size of the user ids cofferd draws for new accounts.
const UserIDSize = 16

// tokenSize is the number of random bytes in a bearer token.
const tokenSize = 32

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

// accountsFile is the JSON layout of the accounts file.
type accountsFile struct {
	Version  int       `json:"version"`
	Accounts []Account `json:"accounts"`
}

const accountsVersion = 1

var accountNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// ErrNoAccount is returned for an account name that does not exist.
var ErrNoAccount = errors.New("host: no such account")

func readAccountsFile(path string) (*accountsFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &accountsFile{Version: accountsVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	var f accountsFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Version != accountsVersion {
		return nil, fmt.Errorf("%s: accounts file version %d, want %d", path, f.Version, accountsVersion)
	}
	seenName := map[string]bool{}
	seenUser := map[string]bool{}
	seenToken := map[string]bool{}
	for _, a := range f.Accounts {
		switch {
		case !accountNameRE.MatchString(a.Name):
			return nil, fmt.Errorf("%s: bad account name %q", path, a.Name)
		case len(a.UserID) < 1 || len(a.UserID) > 64:
			return nil, fmt.Errorf("%s: account %q: user id of %d bytes", path, a.Name, len(a.UserID))
		case len(a.TokenSHA256) != sha256.Size:
			return nil, fmt.Errorf("%s: account %q: token hash of %d bytes", path, a.Name, len(a.TokenSHA256))
		case seenName[a.Name]:
			return nil, fmt.Errorf("%s: account %q twice", path, a.Name)
		case seenUser[string(a.UserID)]:
			return nil, fmt.Errorf("%s: account %q shares its user id with another", path, a.Name)
		case seenToken[string(a.TokenSHA256)]:
			return nil, fmt.Errorf("%s: account %q shares its token with another", path, a.Name)
		}
		seenName[a.Name], seenUser[string(a.UserID)], seenToken[string(a.TokenSHA256)] = true, true, true
	}
	return &f, nil
}

// writeAccountsFile replaces the accounts file atomically (writeFileAtomic).
func writeAccountsFile(path string, f *accountsFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic replaces path atomically: a temporary file in the same
// folder, mode 0600, synced, renamed over the old one, and the folder
// synced, so a crash leaves the old file or the new one, never a torn one.
// When the old file exists and belongs to another user (the daemon's
// DynamicUser, while an admin runs `cofferd account add` as root), the new
// one keeps its owner so that the daemon can still read it.
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

// updateAccounts runs fn on the accounts file under an exclusive lock and
// writes the result back.
func updateAccounts(path string, fn func(*accountsFile) error) error {
	return underLock(path, func() error {
		f, err := readAccountsFile(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		return writeAccountsFile(path, f)
	})
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

// AddAccount creates an account routed to device ("" for the first
// configured device) and returns it with its bearer token, which is not
// stored anywhere: only its SHA-256 is.
func AddAccount(path, name, device string) (Account, string, error) {
	if !accountNameRE.MatchString(name) {
		return Account{}, "", fmt.Errorf("account name %q: use 1 to 64 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit", name)
	}
	if device != "" && !deviceNameRE.MatchString(device) {
		return Account{}, "", fmt.Errorf("device name %q is not valid", device)
	}
	raw := make([]byte, tokenSize)
	if _, err := rand.Read(raw); err != nil {
		return Account{}, "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256(raw)
	clear(raw)
	a := Account{Name: name, Device: device, TokenSHA256: sum[:], Created: time.Now().UTC().Truncate(time.Second)}
	err := updateAccounts(path, func(f *accountsFile) error {
		for _, o := range f.Accounts {
			if o.Name == name {
				return fmt.Errorf("account %q exists", name)
			}
		}
		for {
			id := make([]byte, UserIDSize)
			if _, err := rand.Read(id); err != nil {
				return err
			}
			if !slices.ContainsFunc(f.Accounts, func(o Account) bool { return string(o.UserID) == string(id) }) {
				a.UserID = id
				break
			}
		}
		f.Accounts = append(f.Accounts, a)
		return nil
	})
	if err != nil {
		return Account{}, "", err
	}
	return a, token, nil
}

// RemoveAccount deletes an account. Its record in the vault stays (the
// host cannot delete it: deletion is sealed to the vault), but nobody can
// reach it through this cofferd any more.
func RemoveAccount(path, name string) error {
	return updateAccounts(path, func(f *accountsFile) error {
		i := slices.IndexFunc(f.Accounts, func(a Account) bool { return a.Name == name })
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrNoAccount, name)
		}
		f.Accounts = slices.Delete(f.Accounts, i, i+1)
		return nil
	})
}

// ListAccounts returns the accounts in path, sorted by name.
func ListAccounts(path string) ([]Account, error) {
	f, err := readAccountsFile(path)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(f.Accounts, func(a, b Account) int { return strings.Compare(a.Name, b.Name) })
	return f.Accounts, nil
}

// Accounts is the daemon's view of the accounts file, reloaded when the file
// changes (checked at most once per reloadEvery), so that `cofferd account
// add` takes effect without a restart.
type Accounts struct {
	path string
	now  func() time.Time

	mu        sync.Mutex
	byToken   map[[sha256.Size]byte]*Account
	stamp     fileStamp
	lastCheck time.Time
	loadErr   error

	// OnReload, if set, is told about every reload of the file (the number
	// of accounts now loaded) and every failed one (the old set stays).
	OnReload func(accounts int, err error)
}

type fileStamp struct {
	info os.FileInfo // nil when the file does not exist
}

// same reports whether two stamps name the same file (inode, since the file
// is replaced by rename), unchanged (time and size).
func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return os.SameFile(a.info, b.info) && a.info.ModTime().Equal(b.info.ModTime()) && a.info.Size() == b.info.Size()
}

const reloadEvery = time.Second

// LoadAccounts reads the accounts file at path. A missing file is an empty
// set of accounts (accounts added later are picked up).
func LoadAccounts(path string) (*Accounts, error) {
	a := &Accounts{path: path, now: time.Now}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// NewAccounts makes an in-memory account set (tests, embedding).
func NewAccounts(accts ...Account) *Accounts {
	a := &Accounts{now: time.Now, byToken: map[[sha256.Size]byte]*Account{}}
	for i := range accts {
		var k [sha256.Size]byte
		copy(k[:], accts[i].TokenSHA256)
		a.byToken[k] = &accts[i]
	}
	return a
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{info: st}, nil
}

func (a *Accounts) reload() error {
	stamp, err := stampOf(a.path)
	if err != nil {
		return err
	}
	f, err := readAccountsFile(a.path)
	if err != nil {
		return err
	}
	m := make(map[[sha256.Size]byte]*Account, len(f.Accounts))
	for i := range f.Accounts {
		var k [sha256.Size]byte
		copy(k[:], f.Accounts[i].TokenSHA256)
		m[k] = &f.Accounts[i]
	}
	a.byToken, a.stamp = m, stamp
	return nil
}

// maybeReload rereads the file if it changed. A file that no longer parses
// keeps the accounts last loaded (and the error is reported once).
func (a *Accounts) maybeReload() (reloaded bool, err error) {
	if a.path == "" {
		return false, nil
	}
	now := a.now()
	if now.Sub(a.lastCheck) < reloadEvery {
		return false, nil
	}
	a.lastCheck = now
	stamp, err := stampOf(a.path)
	if err != nil || stamp.same(a.stamp) {
		return false, err
	}
	if err := a.reload(); err != nil {
		if a.loadErr == nil || a.loadErr.Error() != err.Error() {
			a.loadErr = err
			return false, err
		}
		return false, nil
	}
	a.loadErr = nil
	return true, nil
}

// Authenticate returns the account whose token this is. The token is the
// base64url text of Authorization: Bearer.
func (a *Accounts) Authenticate(token string) (*Account, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != tokenSize {
		return nil, false
	}
	// A map lookup by the token's hash leaks, through timing, at most
	// something about the hash of the token tried: nothing about any
	// valid token.
	sum := sha256.Sum256(raw)
	clear(raw)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshLocked()
	acct, ok := a.byToken[sum]
	return acct, ok
}

func (a *Accounts) refreshLocked() bool {
	reloaded, err := a.maybeReload()
	if (reloaded || err != nil) && a.OnReload != nil {
		a.OnReload(len(a.byToken), err)
	}
	return reloaded
}

// Refresh rereads the accounts file if it changed since it was last read,
// at most once per second, and reports whether it reloaded.
func (a *Accounts) Refresh() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshLocked()
}

// All returns the accounts currently loaded.
func (a *Accounts) All() []Account {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Account, 0, len(a.byToken))
	for _, acct := range a.byToken {
		out = append(out, *acct)
	}
	slices.SortFunc(out, func(x, y Account) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// CreateAccountsFile writes an empty accounts file at path, unless one exists.
func CreateAccountsFile(path string) error {
	return createOnce(path, func() error {
		return writeAccountsFile(path, &accountsFile{Version: accountsVersion, Accounts: []Account{}})
	})
}
