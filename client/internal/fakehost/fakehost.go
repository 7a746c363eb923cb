// Package fakehost is a minimal stand-in for cofferd in tests: the vault
// (applet/vault) in the same process, behind the HTTP endpoints of
// host/API.md that clients use (bearer tokens, GET /v1/account,
// GET /v1/identity, POST /v1/vault, 403 for another account's user id in a
// register-start, login-start or user-status).
// Hooks let tests play the untrusted host: answer with errors, replay or
// replace replies, swap the vault for another device, or roll its store
// back.
//
// It is test support only; the real daemon is host/cmd/cofferd.
package fakehost

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/protocol"
)

// Options describe the vault device behind the host.
type Options struct {
	Insecure bool
	MaxLimit uint   // 0: protocol.DefaultLimit
	Name     string // "" : "test vault"
	// FirmwareHash is what the vault measures itself running (nil: the
	// vault's default, all zeros).
	FirmwareHash []byte
}

// Interceptor sees every request before the vault does. It may answer it
// (returning true), or return false to let it through. body is the request
// body (a vault envelope for POST /v1/vault), typ its envelope type.
type Interceptor func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool

// Host is the fake cofferd.
type Host struct {
	t      testing.TB
	Server *httptest.Server
	URL    string

	ProvisioningKey ed25519.PublicKey
	provisioning    ed25519.PrivateKey

	// The first account.
	Token  string
	UserID []byte

	mu        sync.Mutex
	accounts  map[string][]byte // token → user id
	store     *memstore.Store
	v         *vault.Vault
	opts      Options // the device's, as Replace or Boot last set them
	intercept Interceptor
	identity  []byte // if set, served for GET /v1/identity instead of the vault's
	counts    map[protocol.Type]int
}

// New starts a host with one account and a fresh vault, provisioned with a
// fresh provisioning key.
func New(t testing.TB, opts Options) *Host {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{t: t, ProvisioningKey: pub, provisioning: priv, accounts: map[string][]byte{}, counts: map[protocol.Type]int{}}
	h.Token, h.UserID = h.AddAccount()
	h.Replace(opts)
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	h.URL = h.Server.URL
	t.Cleanup(h.Close)
	return h
}

// Close stops the server and the vault.
func (h *Host) Close() {
	h.Server.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.v != nil {
		h.v.Close()
	}
}

// ProvisioningKeyHex is what a client configuration pins.
func (h *Host) ProvisioningKeyHex() string { return hex.EncodeToString(h.ProvisioningKey) }

// AddAccount adds an account with a random 16-byte user id, as cofferd's
// `account add` does, and returns its token.
func (h *Host) AddAccount() (token string, userID []byte) {
	tok := make([]byte, 32)
	userID = make([]byte, 16)
	rand.Read(tok)
	rand.Read(userID)
	token = hex.EncodeToString(tok)
	h.mu.Lock()
	h.accounts[token] = userID
	h.mu.Unlock()
	return token, userID
}

// AddToken makes token another bearer token of the account with userID:
// one cofferd would not draw, such as a token beginning with '-'.
func (h *Host) AddToken(token string, userID []byte) {
	h.mu.Lock()
	h.accounts[token] = userID
	h.mu.Unlock()
}

// Replace puts a new vault device (new keys, empty store) behind the host,
// provisioned with the same provisioning key.
func (h *Host) Replace(opts Options) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.v != nil {
		h.v.Close()
	}
	h.store = memstore.New()
	if opts.Name == "" {
		opts.Name = "test vault"
	}
	h.opts = opts
	h.v = h.open(true)
	h.provisionLocked()
	h.identity = nil
}

// open starts a vault on the store with h.opts.
func (h *Host) open(create bool) *vault.Vault {
	h.t.Helper()
	v, err := vault.New(context.Background(), h.store, vault.Options{Create: create, Insecure: h.opts.Insecure,
		MaxLimit: h.opts.MaxLimit, Name: h.opts.Name, FirmwareHash: h.opts.FirmwareHash})
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

func (h *Host) provisionLocked() *protocol.SignedIdentity {
	h.t.Helper()
	signed, err := protocol.SignIdentity(h.provisioning, h.v.Identity())
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.v.InstallIdentity(context.Background(), signed); err != nil {
		h.t.Fatal(err)
	}
	return &signed
}

// Reboot restarts the vault on its store: everything in its RAM (pending
// logins, sessions) is lost.
func (h *Host) Reboot() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.v.Close()
	h.v = h.open(false)
}

// Boot restarts the device on its store running other firmware (an
// upgrade, or a host booting it into another logged release): its keys
// are the same, its identity names the new firmware hash, and it serves no
// bundle until one is provisioned for it (Provision).
func (h *Host) Boot(firmware []byte) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.v.Close()
	h.opts.FirmwareHash = firmware
	h.v = h.open(false)
}

// Provision signs the vault's current identity with the provisioning key
// and installs it, as the provisioning station does after an upgrade.
func (h *Host) Provision() *protocol.SignedIdentity {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.provisionLocked()
}

// SigningKey is the vault's signing key, read from its store as the host of
// a software vault, which holds its files, can.
func (h *Host) SigningKey() ed25519.PrivateKey {
	h.t.Helper()
	b, ok := h.store.Committed([]byte{'i'})
	if !ok {
		h.t.Fatal("no identity record in the vault's store")
	}
	var keys struct {
		Signing []byte `cbor:"1,keyasint"`
	}
	if err := cbor.Unmarshal(b, &keys); err != nil || len(keys.Signing) != ed25519.SeedSize {
		h.t.Fatalf("the identity record's layout changed: %v", err)
	}
	key := ed25519.NewKeyFromSeed(keys.Signing)
	if !key.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(h.VaultIdentity().SigningKey)) {
		h.t.Fatal("the identity record's layout changed: the signing key read is not the vault's")
	}
	return key
}

// Snapshot copies the vault's committed store (and its sequence); calling
// the function returned puts that copy back and reboots the vault: a
// rollback of store and anchor together, which only the client can notice.
func (h *Host) Snapshot() (rollback func()) {
	h.mu.Lock()
	restore := h.store.Snapshot()
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		restore()
		h.mu.Unlock()
		h.Reboot()
	}
}

// SetIdentity makes GET /v1/identity serve b (an encoded envelope) instead
// of the vault's own; nil restores it.
func (h *Host) SetIdentity(b []byte) {
	h.mu.Lock()
	h.identity = b
	h.mu.Unlock()
}

// SignIdentity signs id with this host's provisioning key (to forge
// bundles in tests) and returns the identity envelope.
func (h *Host) SignIdentity(key ed25519.PrivateKey, id *protocol.Identity) []byte {
	if key == nil {
		key = h.provisioning
	}
	signed, err := protocol.SignIdentity(key, id)
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := protocol.Encode(protocol.TypeIdentity, &signed)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// VaultIdentity is the current vault's identity.
func (h *Host) VaultIdentity() *protocol.Identity {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.v.Identity()
}

// Intercept installs (or, with nil, removes) a request hook.
func (h *Host) Intercept(f Interceptor) {
	h.mu.Lock()
	h.intercept = f
	h.mu.Unlock()
}

// Counts returns how many vault requests of each type reached the host.
func (h *Host) Counts() map[protocol.Type]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.counts)
}

// Vault answers one envelope with the current vault, bypassing HTTP.
func (h *Host) Vault(ctx context.Context, req []byte) []byte {
	h.mu.Lock()
	v := h.v
	h.mu.Unlock()
	return v.Handle(ctx, req)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (h *Host) serve(w http.ResponseWriter, r *http.Request) {
	const bearer = "Bearer "
	auth := r.Header.Get("Authorization")
	h.mu.Lock()
	userID, ok := h.accounts[auth[min(len(auth), len(bearer)):]]
	intercept := h.intercept
	identity := h.identity
	h.mu.Unlock()
	if len(auth) < len(bearer) || auth[:len(bearer)] != bearer || !ok {
		jsonError(w, http.StatusUnauthorized, "missing or unknown token")
		return
	}
	var (
		body []byte
		typ  protocol.Type
	)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/account":
		if intercept != nil && intercept(w, r, 0, nil) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"user_id": hex.EncodeToString(userID), "device": "test"})
		return
	case r.Method == http.MethodGet && r.URL.Path == "/v1/identity":
		typ = protocol.TypeIdentity
		if intercept != nil && intercept(w, r, typ, nil) {
			return
		}
		if identity == nil {
			req, _ := protocol.Encode(protocol.TypeIdentity, &protocol.Empty{})
			identity = h.Vault(r.Context(), req)
		}
		w.Header().Set("Content-Type", "application/cbor")
		w.Write(identity)
		return
	case r.Method == http.MethodGet && r.URL.Path == "/v1/rollbacks":
		// Served only by an interceptor: by default this host is an
		// older cofferd, without rollback declarations.
		if intercept != nil && intercept(w, r, 0, nil) {
			return
		}
		jsonError(w, http.StatusNotFound, "no such endpoint")
		return
	case r.Method == http.MethodPost && r.URL.Path == "/v1/vault":
	default:
		jsonError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxMessageSize+1))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "reading the request")
		return
	}
	if len(body) > protocol.MaxMessageSize {
		jsonError(w, http.StatusRequestEntityTooLarge, "request over 16 KiB")
		return
	}
	if typ, err = protocol.PeekType(body); err != nil {
		jsonError(w, http.StatusBadRequest, "not a vault envelope")
		return
	}
	h.mu.Lock()
	h.counts[typ]++
	h.mu.Unlock()
	var routed []byte
	switch typ {
	case protocol.TypeRegisterStart:
		var m protocol.RegisterStart
		if err := protocol.Decode(body, typ, &m); err != nil {
			jsonError(w, http.StatusBadRequest, "bad register-start")
			return
		}
		routed = m.UserID
	case protocol.TypeLoginStart:
		var m protocol.LoginStart
		if err := protocol.Decode(body, typ, &m); err != nil {
			jsonError(w, http.StatusBadRequest, "bad login-start")
			return
		}
		routed = m.UserID
	case protocol.TypeUserStatus:
		var m protocol.UserStatusRequest
		if err := protocol.Decode(body, typ, &m); err != nil {
			jsonError(w, http.StatusBadRequest, "bad user-status")
			return
		}
		routed = m.UserID
	}
	if routed != nil && string(routed) != string(userID) {
		jsonError(w, http.StatusForbidden, fmt.Sprintf("user id %x is not this account's", routed))
		return
	}
	if intercept != nil && intercept(w, r, typ, body) {
		return
	}
	w.Header().Set("Content-Type", "application/cbor")
	w.Write(h.Vault(r.Context(), body))
}
