-- Version 1: accounts, devices, hosts and rate-limit buckets. Times are
-- Unix nanoseconds (0: never); counters and limits are uint64 stored
-- bit for bit in a 64-bit integer.
CREATE TABLE devices (
	name          TEXT PRIMARY KEY,
	host          TEXT NOT NULL,
	state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'retired')),
	capacity      INTEGER NOT NULL DEFAULT 0,
	anchor_budget INTEGER NOT NULL DEFAULT 0,
	accounts      INTEGER NOT NULL DEFAULT 0,
	healthy       INTEGER NOT NULL DEFAULT 0,
	anchor_writes INTEGER NOT NULL DEFAULT 0,
	seen          INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE accounts (
	name         TEXT PRIMARY KEY,
	user_id      BLOB NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),
	token_sha256 BLOB NOT NULL CHECK (length(token_sha256) = 32),
	device       TEXT REFERENCES devices (name),
	created      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX accounts_user_id ON accounts (user_id);
CREATE UNIQUE INDEX accounts_token ON accounts (token_sha256);

CREATE TABLE hosts (
	name     TEXT PRIMARY KEY,
	peer_url TEXT NOT NULL,
	seen     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE buckets (
	name        TEXT PRIMARY KEY,
	tokens      REAL NOT NULL,
	last_refill INTEGER NOT NULL
) WITHOUT ROWID;
