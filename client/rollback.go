package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cofferhsm/coffer/protocol"
)

// Recovering from a rollback (SPEC.md, "Recovering from a rollback").
//
// A client whose vault signs a lower store sequence than it has seen, or an
// attempt receipt whose running total did not grow, stops with a
// *RollbackError at every contact: the vault's store went back, and the
// attempts it counted since may be undone. Nothing the host sends makes it
// go on. Two ways out:
//
//   - the operator restores the latest state: the sequence is back where
//     this device saw it, and nothing is needed here;
//   - the user, told what the vault signs now and whether the operator
//     declared the rollback (cofferd's GET /v1/rollbacks), accepts the
//     vault's current state in so many words, and the key moves to a new
//     password at once (a new registration: guesses the rollback hid were
//     made against the old one). Only RecoverRollback and
//     RegisterAfterRollback accept a lower state, only for a
//     *RollbackState that CheckRollback read just before, and only if the
//     whole recovery succeeds; on any failure the configuration keeps what
//     it had, and the client stays stopped.

// RollbackState compares the vault's store sequence, from a signed status
// that answers a fresh nonce, with the highest this device has seen.
type RollbackState struct {
	HighestSeen uint64 // the highest store sequence this device has seen
	Current     uint64 // what the vault signs now
}

// Behind reports whether the vault's store is behind what this device saw:
// a rollback of the store. An account's own record rolled back while the
// sequence was pushed past this device's shows only at a login (its
// attempts total), never here.
func (s *RollbackState) Behind() bool { return s.Current < s.HighestSeen }

// CheckRollback asks the vault for a fresh signed status and compares it
// with the highest store sequence this device has seen. Unlike Status it
// records nothing and refuses no rollback: it is what the user is shown
// before deciding.
func (c *Client) CheckRollback(ctx context.Context) (*RollbackState, error) {
	st, err := c.status(ctx)
	if err != nil {
		return nil, err
	}
	return &RollbackState{HighestSeen: c.cfg.HighestStoreSequence, Current: st.StoreSequence}, nil
}

// RollbackDeclaration is an operator's statement, served by cofferd, that
// the vault's store went back or was lost (host/API.md, GET /v1/rollbacks).
// It proves nothing (cofferd is not trusted, and whoever rolls a store back
// can write one): it tells the user that the operator owns up to it.
// Reason is at most MaxDeclarationReason characters, printable, as the
// client checked it; show it quoted all the same.
type RollbackDeclaration struct {
	DeclaredAt time.Time
	Reason     string
}

// Bounds of what the client accepts of cofferd's declarations.
const (
	MaxDeclarationReason = 500
	maxDeclarations      = 10
)

// ErrNoDeclarations: this cofferd does not serve rollback declarations (an
// older one, or one embedded without them).
var ErrNoDeclarations = errors.New("cofferd does not serve rollback declarations")

// RollbackDeclarations fetches the operator's declarations for the
// account's vault, oldest first. A declaration that is not plain printable
// text of at most MaxDeclarationReason characters, or more than 10 of them,
// is refused: the host would be writing to the user's terminal.
func (c *Conn) RollbackDeclarations(ctx context.Context) ([]RollbackDeclaration, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/rollbacks", nil, "rollbacks")
	var se *ServerError
	if errors.As(err, &se) && (se.StatusCode == http.StatusNotFound || se.StatusCode == http.StatusNotImplemented) {
		return nil, ErrNoDeclarations
	}
	if err != nil {
		return nil, err
	}
	return parseDeclarations(b)
}

// parseDeclarations reads cofferd's GET /v1/rollbacks body.
func parseDeclarations(b []byte) ([]RollbackDeclaration, error) {
	var body struct {
		Declarations []struct {
			DeclaredAt time.Time `json:"declared_at"`
			Reason     string    `json:"reason"`
		} `json:"declarations"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("client: cofferd's rollback declarations: %w", err)
	}
	if len(body.Declarations) > maxDeclarations {
		return nil, fmt.Errorf("client: cofferd sent %d rollback declarations, at most %d are served", len(body.Declarations), maxDeclarations)
	}
	var out []RollbackDeclaration
	for _, d := range body.Declarations {
		if err := checkDeclarationReason(d.Reason); err != nil {
			return nil, fmt.Errorf("client: cofferd's rollback declaration: %w", err)
		}
		out = append(out, RollbackDeclaration{DeclaredAt: d.DeclaredAt, Reason: d.Reason})
	}
	return out, nil
}

func checkDeclarationReason(s string) error {
	if !utf8.ValidString(s) || s == "" || utf8.RuneCountInString(s) > MaxDeclarationReason {
		return fmt.Errorf("a reason that is empty, not UTF-8 or over %d characters", MaxDeclarationReason)
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return fmt.Errorf("a reason with the character %q in it", r)
		}
	}
	return nil
}

// RollbackDeclarations fetches the operator's declarations for this
// account's vault (Conn.RollbackDeclarations).
func (c *Client) RollbackDeclarations(ctx context.Context) ([]RollbackDeclaration, error) {
	return c.conn.RollbackDeclarations(ctx)
}

// ErrSamePassword refuses a recovery that keeps the password: guesses a
// rollback undid may have been made against it.
var ErrSamePassword = errors.New("client: choose a new password: guesses the rollback undid may have been made against the old one")

// trustState is what a recovery may change of the configuration, kept to
// be put back when it fails.
type trustState struct {
	highest    uint64
	last       *ReceiptInfo
	generation uint64
	limit      uint
}

func (c *Client) saveTrust() trustState {
	return trustState{c.cfg.HighestStoreSequence, c.cfg.LastReceipt, c.cfg.Generation, c.cfg.Limit}
}

func (c *Client) restoreTrust(t trustState) {
	c.cfg.HighestStoreSequence, c.cfg.LastReceipt, c.cfg.Generation, c.cfg.Limit = t.highest, t.last, t.generation, t.limit
}

// acceptFrom makes the vault's state as of st this device's baseline, for
// the recovery under way: store sequences from st.Current on, and any
// running totals (the receipts this device kept are of the state that
// went away).
func (c *Client) acceptFrom(st *RollbackState) error {
	if st == nil || st.HighestSeen != c.cfg.HighestStoreSequence {
		return errors.New("client: the rollback to accept was not read from this client (CheckRollback)")
	}
	c.cfg.HighestStoreSequence, c.cfg.LastReceipt = st.Current, nil
	return nil
}

// RollbackUserStatus is UserStatus against the vault's state as st
// describes it: the signed count of tries that a recovery's login
// (RecoverRollback) is made against, which UserStatus itself refuses as a
// rollback. The configuration keeps what it had.
func (c *Client) RollbackUserStatus(ctx context.Context, st *RollbackState) (*UserStatus, error) {
	saved := c.saveTrust()
	defer c.restoreTrust(saved)
	if err := c.acceptFrom(st); err != nil {
		return nil, err
	}
	return c.UserStatus(ctx)
}

// RollbackRecovery is what a recovery did.
type RollbackRecovery struct {
	// Released is the login's release receipt (RecoverRollback): its
	// FailedSinceSuccess counts the failed attempts the vault's state,
	// as it is now, has on record.
	Released *protocol.Receipt
	// Receipt is the new registration's: changed (RecoverRollback) or
	// registered (RegisterAfterRollback). Its store sequence is this
	// device's new baseline.
	Receipt *protocol.Receipt
}

// RecoverRollback accepts the rollback st describes, as the user confirmed
// after being shown it: it logs in with password to the record the vault
// holds now, checks the key it releases is this account's (its age
// recipient), and moves it to newPassword (a new registration, the same
// key and limit). Only once the new registration's receipt verifies does
// the configuration take the vault's state as its new baseline; on any
// failure it keeps what it had and the client stays stopped. A login that
// finds no record this password opens fails with ErrNotHeld: the rollback
// lost the key, and RegisterAfterRollback puts it back from the 64-digit
// key, if the user has it.
func (c *Client) RecoverRollback(ctx context.Context, st *RollbackState, password, newPassword []byte) (*RollbackRecovery, error) {
	if err := differentPasswords(password, newPassword); err != nil {
		return nil, err
	}
	saved := c.saveTrust()
	rec, err := c.recoverRollback(ctx, st, password, newPassword)
	if err != nil {
		c.restoreTrust(saved)
		return nil, err
	}
	return rec, nil
}

func (c *Client) recoverRollback(ctx context.Context, st *RollbackState, password, newPassword []byte) (*RollbackRecovery, error) {
	if err := c.acceptFrom(st); err != nil {
		return nil, err
	}
	s, err := c.Login(ctx, password)
	if err != nil {
		return nil, err
	}
	defer s.Close(ctx)
	if r, err := s.BackupKey().AgeRecipient(); err != nil || r != c.cfg.AgeRecipient {
		return nil, fmt.Errorf("client: the vault released a key that is not this account's (it encrypts to %s, this account's backups to %s); nothing was changed", r, c.cfg.AgeRecipient)
	}
	changed, err := s.ChangePassword(ctx, newPassword, 0)
	if err != nil {
		return nil, err
	}
	return &RollbackRecovery{Released: s.Released, Receipt: changed}, nil
}

// RegisterAfterRollback accepts the rollback st describes, as the user
// confirmed after being shown it, when the vault no longer holds the
// account's record (its store was lost, or went back to before the
// registration): it registers k, which must be this account's key (the
// 64-digit key the user kept), behind newPassword with limit (0: the
// limit this account had). The configuration takes the vault's state as
// its new baseline only once the registration's receipt verifies. A vault
// that still holds a record for the account refuses (exists): recover it
// with its password instead (RecoverRollback).
func (c *Client) RegisterAfterRollback(ctx context.Context, st *RollbackState, k *BackupKey, newPassword []byte, limit uint) (*RollbackRecovery, error) {
	if r, err := k.AgeRecipient(); err != nil || r != c.cfg.AgeRecipient {
		return nil, fmt.Errorf("client: this is not this account's key (it encrypts to %s, this account's backups to %s); nothing was changed", r, c.cfg.AgeRecipient)
	}
	if limit == 0 {
		limit = c.cfg.Limit
	}
	saved := c.saveTrust()
	if err := c.acceptFrom(st); err != nil {
		return nil, err
	}
	r, err := c.Register(ctx, newPassword, k, limit)
	if err != nil {
		c.restoreTrust(saved)
		return nil, err
	}
	return &RollbackRecovery{Receipt: r}, nil
}

func differentPasswords(old, new []byte) error {
	a, err := NormalizePassword(old)
	if err != nil {
		return err
	}
	defer clear(a)
	b, err := NormalizePassword(new)
	if err != nil {
		return err
	}
	defer clear(b)
	if bytes.Equal(a, b) {
		return ErrSamePassword
	}
	return nil
}
