-- Version 3: route lookup (an account by its token's SHA-256) as an
-- index-only scan: the token's unique index carries every column the
-- lookup reads, so it need not visit the table (for pages the visibility
-- map marks all-visible, which autovacuum keeps up). Placing an account
-- (a new device) now writes the index too. On a large realm the build
-- takes a while, and holds off writes to accounts until it is done.
CREATE UNIQUE INDEX accounts_token_cover ON accounts (token_sha256) INCLUDE (name, user_id, device, created);
DROP INDEX accounts_token;
