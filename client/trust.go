package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/cofferhsm/coffer/client/logcheck"
	"github.com/cofferhsm/coffer/protocol"
)

// Errors of vault trust. Each is wrapped with details.
var (
	// ErrUntrustedBundle: the identity bundle is not signed by the
	// provisioning key in the configuration (or does not decode).
	ErrUntrustedBundle = errors.New("the vault's identity bundle is not signed by the pinned provisioning key")
	// ErrBundleChanged: a validly signed bundle that differs from the one
	// pinned on first use: another vault, or new firmware.
	ErrBundleChanged = errors.New("the vault's identity bundle changed since it was pinned")
	// ErrInsecureVault: the bundle says the vault is a software vault or
	// an emulator, and the user did not accept that (--insecure).
	ErrInsecureVault = errors.New("the vault is INSECURE (a software vault or emulator: its keys are not protected by hardware); refused without --insecure")
	// ErrBadReceipt: a receipt does not verify or does not say what the
	// client asked for.
	ErrBadReceipt = errors.New("the vault's receipt does not check out")
	// ErrNotLogged: the vault's identity bundle, or the release its
	// firmware hash names, is not in the pinned release log. Refused
	// unless AllowUnlogged (--insecure).
	ErrNotLogged = errors.New("the vault is not in the release log")
	// ErrRevoked: the release log revokes the vault's release or its
	// identity. Refused always.
	ErrRevoked = errors.New("the release log REVOKES this vault")
	// ErrNoLogPolicy: no release-log policy is pinned, so the vault cannot
	// be checked; refused unless insecure vaults are allowed.
	ErrNoLogPolicy = errors.New("no release-log policy is pinned, so the vault cannot be checked against the release log")
	// ErrFirmwareMismatch: the vault's signed status, fresh for this
	// contact, names other firmware than its identity bundle: the host
	// serves a bundle of another release than the device runs. Refused
	// always.
	ErrFirmwareMismatch = errors.New("the vault runs other firmware than its identity bundle names")
	// ErrDowngrade: a changed bundle with the pinned keys names a logged
	// release whose version is not above the pinned one's: the device
	// was booted back into an older release. Refused always; no consent
	// is asked.
	ErrDowngrade = errors.New("DOWNGRADE: the vault's new identity bundle names no newer release than the pinned one")
)

// RollbackError is returned when the vault signs a store sequence lower than
// one this client has already seen: its store went back in time.
type RollbackError struct {
	Highest, Got uint64
	// Attempts is set when it was the account's running total of attempts
	// that went back (Highest and Got are then totals, not sequences).
	Attempts bool
}

func (e *RollbackError) Error() string {
	if e.Attempts {
		return fmt.Sprintf("ROLLBACK: the vault counts %d attempts on this account, but this device has already seen %d: "+
			"the vault's storage was restored to an older copy, which undoes counted login attempts "+
			"(the software vault and QEMU builds cannot detect this themselves); stopped", e.Got, e.Highest)
	}
	return fmt.Sprintf("ROLLBACK: the vault signed store sequence %d, but this client has already seen %d: "+
		"the vault's storage was restored to an older copy, which may undo counted login attempts "+
		"(the software vault and QEMU builds cannot detect this themselves); stopped", e.Got, e.Highest)
}

// Options configure a Client.
type Options struct {
	HTTPClient *http.Client // nil: a default with a timeout
	Rand       io.Reader    // nil: crypto/rand
	// AllowInsecure accepts a vault whose bundle says insecure (also
	// accepted when the configuration's AllowInsecure is set), and, with
	// no release-log policy pinned, a vault that cannot be checked.
	AllowInsecure bool
	// AllowUnlogged accepts a vault whose bundle or release is not in the
	// pinned release log, or that can only be checked against a log older
	// than its policy's max-age (the CLI's --insecure; never saved). A
	// revoked one is refused all the same. Notice says so at every contact.
	AllowUnlogged bool
	// RecoverRollback is for the rollback recovery only (CheckRollback,
	// `coffer vault recover-rollback`): Connect checks the vault as always
	// but leaves the store-sequence tripwire to CheckRollback, so that the
	// user can be shown the rollback and decide. Every other use stops at a
	// rollback.
	RecoverRollback bool
	// LogSource serves the release log instead of the vault's cofferd
	// (nil: cofferd's /v1/log/); the configuration's log URL, if any, is
	// read besides it. Nothing either serves is believed before it
	// verifies.
	LogSource logcheck.Source
	// Notice receives what the user must be told at this contact: an
	// unverified or unlogged vault let through, an upgrade accepted.
	Notice func(Notice)
	// AcceptNewIdentity is asked, when set, about a bundle whose keys
	// differ from the pinned ones (logged and unrevoked, or let through by
	// AllowUnlogged): returning nil pins it. Unset, such a bundle is
	// refused with ErrBundleChanged.
	AcceptNewIdentity func(*IdentityChange) error

	// ksfParameters overrides Argon2id's (passes, KiB, lanes) in tests;
	// nil means SPEC.md's values, the only ones real records use.
	ksfParameters []uint64
	// now replaces, in tests, the clock the release log's freshness is
	// judged by.
	now func() time.Time
}

// Client is one account's connection to its vault through cofferd. It
// updates its *Config in place (the pin on first use, the highest store
// sequence, the last receipt); the caller saves it, also after errors.
type Client struct {
	cfg    *Config
	conn   *Conn
	id     *protocol.Identity
	userID []byte
	random io.Reader
	ksf    []uint64
}

// Connect checks the vault behind cofferd before anything else is sent to
// it: it fetches the identity bundle, verifies it against the provisioning
// key, reads the vault's signed status for this contact (fresh, running the
// firmware the bundle names, its store sequence not below the highest
// seen), checks the bundle and its release against the pinned release log
// (log_trust.go), pins it on first use (its hash goes into cfg) or refuses
// one that changed (an upgrade with the same keys to a logged, higher
// release is accepted and shown; a lower one is a downgrade), and refuses
// an insecure vault unless allowed.
func Connect(ctx context.Context, cfg *Config, opts Options) (*Client, error) {
	if cfg.Mode != ModePassword {
		return nil, errors.New("client: this account keeps its key as a 64-digit key, not in the vault")
	}
	if err := cfg.validateVault(); err != nil {
		return nil, fmt.Errorf("client: configuration: %w", err)
	}
	conn, err := NewConn(cfg.Server, cfg.Token, opts.HTTPClient)
	if err != nil {
		return nil, err
	}
	userID, _ := cfg.userID()
	c := &Client{cfg: cfg, conn: conn, userID: userID, random: opts.Rand, ksf: opts.ksfParameters}
	if c.random == nil {
		c.random = rand.Reader
	}
	si, err := conn.Identity(ctx)
	if err != nil {
		return nil, err
	}
	vt := &vaultTrust{pin: cfg.Log, allowInsecure: opts.AllowInsecure || cfg.AllowInsecure, allowUnlogged: opts.AllowUnlogged,
		source: opts.LogSource, notice: opts.Notice, accept: opts.AcceptNewIdentity,
		httpClient: opts.HTTPClient, now: opts.now}
	pin := vaultPin{provisioningKey: cfg.ProvisioningKey, bundleHash: &cfg.BundleHash, vault: &cfg.Vault, reset: func() {
		// New keys are another store: its sequence and receipts start
		// again (the account's key, if any, is not in it).
		cfg.HighestStoreSequence, cfg.LastReceipt = 0, nil
	}}
	id, st, err := vt.check(ctx, conn, pin, si)
	if err != nil {
		return nil, err
	}
	c.id = id
	if opts.RecoverRollback {
		return c, nil
	}
	if err := c.sequence(st.StoreSequence); err != nil {
		return nil, err
	}
	return c, nil
}

// BundleHash is what the configuration pins: SHA-256 of the bundle's
// signed body, in hex.
func BundleHash(si *protocol.SignedIdentity) string {
	sum := sha256.Sum256(si.Body)
	return hex.EncodeToString(sum[:])
}

// Identity is the vault's verified identity.
func (c *Client) Identity() *protocol.Identity { return c.id }

// UserID is the account's user id.
func (c *Client) UserID() []byte { return slices.Clone(c.userID) }

var receiptKindNames = map[protocol.ReceiptKind]string{
	protocol.ReceiptRegistered: "registered",
	protocol.ReceiptAttempt:    "attempt",
	protocol.ReceiptLocked:     "locked",
	protocol.ReceiptReleased:   "released",
	protocol.ReceiptChanged:    "changed",
	protocol.ReceiptDeleted:    "deleted",
}

// ReceiptKindName names a receipt kind as SPEC.md does.
func ReceiptKindName(k protocol.ReceiptKind) string {
	if s, ok := receiptKindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind %d", k)
}

// verify checks a receipt's signature with the pinned bundle's signing key,
// its kind and its user id. The caller checks the hashes, then accepts it.
func (c *Client) verify(sr *protocol.SignedReceipt, kinds ...protocol.ReceiptKind) (*protocol.Receipt, error) {
	if sr == nil {
		return nil, fmt.Errorf("client: %w: the vault sent none", ErrBadReceipt)
	}
	r, err := sr.Verify(c.id.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("client: %w: %v", ErrBadReceipt, err)
	}
	if !slices.Contains(kinds, r.Kind) {
		return nil, fmt.Errorf("client: %w: it is a %q receipt", ErrBadReceipt, ReceiptKindName(r.Kind))
	}
	if string(r.UserID) != string(c.userID) {
		return nil, fmt.Errorf("client: %w: it is for user %x, not %x", ErrBadReceipt, r.UserID, c.userID)
	}
	return r, nil
}

// accept records a verified receipt, refusing a store sequence lower than
// the highest seen.
func (c *Client) accept(r *protocol.Receipt) error {
	if err := c.sequence(r.StoreSequence); err != nil {
		return err
	}
	c.cfg.LastReceipt = &ReceiptInfo{
		Kind:               ReceiptKindName(r.Kind),
		Generation:         r.Generation,
		Limit:              r.Limit,
		TriesLeft:          r.TriesLeft,
		FailedSinceSuccess: r.FailedSinceSuccess,
		StoreSequence:      r.StoreSequence,
		AttemptsTotal:      uint64(r.AttemptsTotal),
		SuccessesTotal:     uint64(r.SuccessesTotal),
	}
	return nil
}

// checkTotals refuses a receipt for the registration this device last saw
// whose running total of attempts did not grow past that receipt's: an
// attempt receipt counts its own attempt, so anything less is a rollback of
// the account's record, which the store sequence alone misses once the
// operator has pushed it past the client's highest.
func (c *Client) checkTotals(r *protocol.Receipt) error {
	last := c.cfg.LastReceipt
	if last == nil || c.cfg.Generation == 0 || r.Generation != c.cfg.Generation || last.Generation != r.Generation {
		return nil // not the registration this device knows (or nothing to compare)
	}
	got := uint64(r.AttemptsTotal)
	if got < last.AttemptsTotal || (r.Kind == protocol.ReceiptAttempt && got == last.AttemptsTotal) {
		return &RollbackError{Highest: last.AttemptsTotal, Got: got, Attempts: true}
	}
	return nil
}

// notFromThisDevice counts the attempts the vault counted on this account
// since the last receipt this device saw, other than the one r is for:
// attempts made elsewhere (another device of the user's, a login whose
// reply was lost, or someone guessing). It knows nothing on a device that
// has seen no receipt of this registration.
func (c *Client) notFromThisDevice(r *protocol.Receipt) (n uint64, known bool) {
	last := c.cfg.LastReceipt
	if last == nil || last.Generation != r.Generation {
		return 0, false
	}
	own := uint64(0)
	if r.Kind == protocol.ReceiptAttempt {
		own = 1 // an attempt receipt counts its own login
	}
	total := uint64(r.AttemptsTotal)
	if total < last.AttemptsTotal+own {
		return 0, true
	}
	return total - last.AttemptsTotal - own, true
}

func (c *Client) sequence(seq uint64) error {
	if seq < c.cfg.HighestStoreSequence {
		return &RollbackError{Highest: c.cfg.HighestStoreSequence, Got: seq}
	}
	c.cfg.HighestStoreSequence = seq
	return nil
}

// Status asks the vault for its signed status again (Connect already read
// one), checks it as at every contact (fetchStatus) and against the highest
// store sequence seen, and returns it.
func (c *Client) Status(ctx context.Context) (*protocol.Status, error) {
	st, err := c.status(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.sequence(st.StoreSequence); err != nil {
		return nil, err
	}
	return st, nil
}

// status fetches and checks a fresh signed status (fetchStatus), without
// comparing its store sequence with the highest seen.
func (c *Client) status(ctx context.Context) (*protocol.Status, error) {
	st, err := fetchStatus(ctx, c.conn, c.id)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// fetchStatus asks the vault behind conn for its signed status and checks
// it against id, the bundle it serves: signed by the bundle's signing key,
// answering this very request (it echoes a fresh nonce: the host cannot
// replay an old one), the same insecure flag, and the same firmware hash.
// The bundle says which firmware the vault ran when it was provisioned;
// only this says which firmware answers now. The caller applies the store
// sequence tripwire.
func fetchStatus(ctx context.Context, conn *Conn, id *protocol.Identity) (*protocol.Status, error) {
	req := protocol.NewStatusRequest()
	var reply protocol.StatusReply
	if err := conn.Call(ctx, protocol.TypeStatus, req, &reply); err != nil {
		return nil, err
	}
	st, err := reply.Verify(id.SigningKey, req.Nonce)
	if err != nil {
		return nil, fmt.Errorf("client: the signed status of vault %s does not verify: %w", strconv.Quote(id.Name), err)
	}
	if st.Insecure != id.Insecure {
		return nil, fmt.Errorf("client: the signed status of vault %s contradicts its bundle's insecure flag", strconv.Quote(id.Name))
	}
	if !bytes.Equal(st.FirmwareHash, id.FirmwareHash) {
		return nil, fmt.Errorf("client: %w: vault %s signs that it runs firmware %x, but its identity bundle names firmware %x: "+
			"its host serves the bundle of another release than the device runs (or booted it into another release); refused",
			ErrFirmwareMismatch, strconv.Quote(id.Name), st.FirmwareHash, id.FirmwareHash)
	}
	return st, nil
}
