// Package startup opens a vault at every start: its record store on a
// device and anchor, then the vault on that store, creating both on the
// first start. The Trusted Applet and the software vault both start this
// way.
//
// The first start is restartable: a power cut at any point of it leaves a
// device whose next start completes it. Each step commits before the next
// one looks at what it left, so the store is always in one of three states,
// and each start takes it from wherever it is:
//
//  1. the anchor was never written (nothing, or a Format cut before its
//     anchor write): Format, which writes a new superblock and empty tree
//     and anchors them; nothing that was ever anchored is overwritten;
//  2. an anchored store that holds no records (cut before the identity's
//     commit): the vault generates its identity and commits it;
//  3. a store that holds records: opened as it is.
//
// A store that holds records is never reformatted and never given a new
// identity: store.Format refuses an anchor that names a store, and the
// identity is created only in an empty store. A store holding records but
// no identity cannot come from a cut first start (the identity is the first
// record committed); it is refused (vault.ErrNotInitialised), as is any
// store that fails its integrity checks. Off hardware, whoever controls the
// anchor file can empty it, which makes the store look never formatted;
// Options.Create lets a caller that cannot tell that from a new device
// (the software vault outside its init) refuse instead.
package startup

import (
	"context"
	"errors"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/internal/storage"
)

// Options configure Open.
type Options struct {
	// Store configures the record store (Reformat is ignored: Open never
	// reformats).
	Store store.Options
	// Vault configures the vault (Create is set by Open).
	Vault vault.Options
	// Create lets Open format a store whose anchor was never written and
	// create the vault's identity in a store that holds no records. Without
	// it, both are errors (store.ErrNotFormatted, vault.ErrNotInitialised).
	Create bool
}

// Vault is an open vault and its store.
type Vault struct {
	*vault.Vault
	Store *store.Store
	// Formatted: this start formatted the store.
	Formatted bool
	// Created: this start created the vault's identity.
	Created bool
}

// Close closes the vault, then its store.
func (v *Vault) Close() error {
	v.Vault.Close()
	return v.Store.Close()
}

// Open opens the vault on dev and anc, completing a first start that was
// cut short (see the package documentation).
func Open(ctx context.Context, dev storage.Device, anc storage.Anchor, opts Options) (*Vault, error) {
	sopts := opts.Store
	sopts.Reformat = false
	st, err := store.Open(dev, anc, sopts)
	formatted := false
	if errors.Is(err, store.ErrNotFormatted) && opts.Create {
		if err = store.Format(dev, anc, sopts); err == nil {
			formatted = true
			st, err = store.Open(dev, anc, sopts)
		}
	}
	clear(sopts.SealingKey[:])
	if err != nil {
		return nil, err
	}
	// The record count is the anchor's, authenticated: an empty store is
	// one that never committed anything, so it holds no identity to lose.
	vopts := opts.Vault
	vopts.Create = opts.Create && st.Stats().Records == 0
	vopts.Occupancy = func() (uint64, uint64) {
		stats := st.Stats()
		return stats.Records, stats.RecordCapacity
	}
	v, err := vault.New(ctx, st, vopts)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Vault{Vault: v, Store: st, Formatted: formatted, Created: vopts.Create}, nil
}
