-- Version 3: route lookup (an account by its token's SHA-256) in one
-- B-tree descent. accounts_token keeps the token unique but holds only
-- the token and the name, so a lookup through it descends a second
-- B-tree, the table's, for the other columns; this index holds every
-- column the lookup reads. SQLite prefers the unique index on its own,
-- so the lookup names this one (INDEXED BY). It costs another copy of
-- each account's lookup columns, one more index write per added or placed
-- account, and, on a large realm, the time to build it at migration.
CREATE INDEX accounts_token_cover ON accounts (token_sha256, user_id, device, created);
