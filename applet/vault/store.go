package vault

import (
	"context"
	"errors"
)

// Store is the durable record store the vault keeps one record per user in.
// The vault defines what a record is; the store only seals, authenticates and
// persists opaque bytes of at most MaxRecordSize.
//
// Changes are staged and become durable together at the next commit (group
// commit): Put and Delete are visible to Get at once, and Commit returns only
// once everything staged before the call is durable. The vault relies on this
// to count a guess before it answers it: it stages the counter increment,
// waits for Commit, and only then evaluates the OPRF.
type Store interface {
	// Get returns the record for id, staged or committed. A record whose
	// authentication fails yields an error (wrapping ErrTampered where the
	// store can tell), never stale or forged bytes.
	Get(id []byte) (rec []byte, found bool, err error)

	// Put stages rec as the record for id. The store keeps its own copy:
	// the caller wipes rec afterwards.
	Put(id, rec []byte) error

	// Delete stages the removal of id.
	Delete(id []byte) error

	// Shred asks that the next commit make every earlier copy of the
	// records changed or deleted since the last commit unreadable, even to
	// someone who kept old sectors (cryptographic erasure).
	Shred()

	// Commit waits until every change staged before the call is durable and
	// returns the store sequence that covers it. The sequence never goes
	// backwards, including across restarts.
	Commit(ctx context.Context) (seq uint64, err error)
}

// MaxRecordSize bounds a record's plaintext: the record store's slot holds
// this much (store.MaxRecordSize, fixed by its format); applet/startup, where
// the two meet, fails to build unless they are equal.
const MaxRecordSize = 440

// ErrTampered marks a store error that means the stored data failed its
// integrity check: the vault refuses service rather than trust it. A store
// may instead return an error with a method Tampered() bool answering true
// (the record store does, since it cannot import this package).
var ErrTampered = errors.New("vault: store integrity check failed")
