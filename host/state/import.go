package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// jsonAccount is one account of cofferd's JSON accounts file (version 1),
// which the database replaces.
type jsonAccount struct {
	Name        string    `json:"name"`
	UserID      hexBytes  `json:"user_id"`
	Device      string    `json:"device,omitempty"`
	TokenSHA256 hexBytes  `json:"token_sha256"`
	Created     time.Time `json:"created"`
}

type hexBytes []byte

func (h *hexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

// readAccountsJSON reads and checks a JSON accounts file as cofferd did:
// version 1, no unknown field, valid names and sizes, no name, user id or
// token hash twice.
func readAccountsJSON(path string) ([]Account, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseAccountsJSON(b, path)
}

func parseAccountsJSON(b []byte, path string) ([]Account, error) {
	var f struct {
		Version  int           `json:"version"`
		Accounts []jsonAccount `json:"accounts"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%s: accounts file version %d, want 1", path, f.Version)
	}
	seenName, seenUser, seenToken := map[string]bool{}, map[string]bool{}, map[string]bool{}
	out := make([]Account, 0, len(f.Accounts))
	for _, j := range f.Accounts {
		a := Account{Name: j.Name, UserID: j.UserID, Device: j.Device, Created: j.Created}
		if err := CheckAccount(a); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case IsFrontName(j.Name):
			return nil, fmt.Errorf("%s: account %q: names starting %q are the fronted users' (host/OPERATIONS.md, \"Fronted by the messenger\"); rename it first", path, j.Name, FrontPrefix)
		case len(j.TokenSHA256) != sha256.Size:
			return nil, fmt.Errorf("%s: account %q: token hash of %d bytes", path, j.Name, len(j.TokenSHA256))
		case seenName[j.Name]:
			return nil, fmt.Errorf("%s: account %q twice", path, j.Name)
		case seenUser[string(j.UserID)]:
			return nil, fmt.Errorf("%s: account %q shares its user id with another", path, j.Name)
		case seenToken[string(j.TokenSHA256)]:
			return nil, fmt.Errorf("%s: account %q shares its token with another", path, j.Name)
		}
		seenName[j.Name], seenUser[string(j.UserID)], seenToken[string(j.TokenSHA256)] = true, true, true
		copy(a.TokenSHA256[:], j.TokenSHA256)
		out = append(out, a)
	}
	return out, nil
}

// ImportAccountsJSON adds the accounts of cofferd's JSON accounts file to
// st, with their device placements, and returns how many it added. The
// import runs before any host has registered its devices: it registers
// under host every device the file names and defaultDevice, and places the
// accounts on no device on defaultDevice (the old cofferd served them on
// its first device). It may be run again: an account already in st with
// the same user id and token hash is skipped; one whose name, user id or
// token hash is taken otherwise is an error that names it (accounts before
// it stay imported).
func ImportAccountsJSON(ctx context.Context, st Store, path, host, defaultDevice string) (n int, err error) {
	if err := CheckHostName(host); err != nil {
		return 0, fmt.Errorf("host: %w", err)
	}
	if err := CheckDeviceName(defaultDevice); err != nil {
		return 0, fmt.Errorf("default device: %w", err)
	}
	accounts, err := readAccountsJSON(path)
	if err != nil {
		return 0, err
	}
	registered := map[string]bool{}
	for i := range accounts {
		if accounts[i].Device == "" {
			accounts[i].Device = defaultDevice
		}
		if d := accounts[i].Device; !registered[d] {
			if err := st.RegisterDevice(ctx, d, host); err != nil {
				return 0, fmt.Errorf("register device %q on host %q: %w", d, host, err)
			}
			registered[d] = true
		}
	}
	if !registered[defaultDevice] {
		if err := st.RegisterDevice(ctx, defaultDevice, host); err != nil {
			return 0, fmt.Errorf("register device %q on host %q: %w", defaultDevice, host, err)
		}
	}
	for _, a := range accounts {
		err := st.AddAccount(ctx, a)
		if err == nil {
			n++
			continue
		}
		if !errors.Is(err, ErrExists) {
			return n, fmt.Errorf("import account %q: %w", a.Name, err)
		}
		old, lerr := st.AccountByName(ctx, a.Name)
		if lerr == nil && bytes.Equal(old.UserID, a.UserID) && subtle.ConstantTimeCompare(old.TokenSHA256[:], a.TokenSHA256[:]) == 1 {
			continue
		}
		return n, fmt.Errorf("import account %q: %w", a.Name, err)
	}
	return n, nil
}
