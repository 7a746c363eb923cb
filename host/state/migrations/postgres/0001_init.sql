-- Version 1: accounts, devices, hosts and rate-limit buckets. Times are
-- Unix nanoseconds (0: never); counters and limits are uint64 stored
-- bit for bit in a bigint. Names sort bytewise (COLLATE "C"), as the
-- other stores page through them.
CREATE TABLE devices (
	name          TEXT COLLATE "C" PRIMARY KEY,
	host          TEXT NOT NULL,
	state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'retired')),
	capacity      BIGINT NOT NULL DEFAULT 0,
	anchor_budget BIGINT NOT NULL DEFAULT 0,
	accounts      BIGINT NOT NULL DEFAULT 0,
	healthy       BOOLEAN NOT NULL DEFAULT false,
	anchor_writes BIGINT NOT NULL DEFAULT 0,
	seen          BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE accounts (
	name         TEXT COLLATE "C" PRIMARY KEY,
	user_id      BYTEA NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),
	token_sha256 BYTEA NOT NULL CHECK (length(token_sha256) = 32),
	device       TEXT COLLATE "C" REFERENCES devices (name),
	created      BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_user_id ON accounts (user_id);
CREATE UNIQUE INDEX accounts_token ON accounts (token_sha256);

CREATE TABLE hosts (
	name     TEXT COLLATE "C" PRIMARY KEY,
	peer_url TEXT NOT NULL,
	seen     BIGINT NOT NULL
);

CREATE TABLE buckets (
	name        TEXT COLLATE "C" PRIMARY KEY,
	tokens      DOUBLE PRECISION NOT NULL,
	last_refill BIGINT NOT NULL
);
