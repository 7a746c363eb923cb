// Package state is cofferd's state behind one small interface, Store:
// accounts (a name, the vault user id drawn for it, the SHA-256 of its
// bearer token), the placement of each account on a device, the registry
// of the realm's devices (which host each hangs off, its drain state, its
// health and free capacity) and of its hosts, and the rate-limit buckets.
//
// Two implementations keep it in a real database: SQLite, embedded and the
// default (one host), and PostgreSQL, which the several cofferd hosts of one
// realm share. A third, in memory, is for tests and embedding. Schema
// migrations are versioned and run by `cofferd migrate`.
//
// Nothing secret is stored: tokens only as hashes, and the vault's records
// stay in the vaults, sealed. Whoever reads the database learns who has an
// account and where it is placed, as the operator does anyway.
package state
