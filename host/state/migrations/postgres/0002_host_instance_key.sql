-- Version 2: what a host's registry entry proves. instance is the random id
-- the running cofferd drew at start (two processes under one host name are
-- refused); peer_key the SHA-256 of its peer certificate's
-- SubjectPublicKeyInfo, which the other hosts require of it (NULL: none);
-- removed is set by `cofferd host remove`, and revokes that key.
ALTER TABLE hosts ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN peer_key BYTEA CHECK (peer_key IS NULL OR length(peer_key) = 32);
ALTER TABLE hosts ADD COLUMN removed BOOLEAN NOT NULL DEFAULT false;
