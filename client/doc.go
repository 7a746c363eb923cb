// Package client is Coffer's client library: everything the user's own device
// does. It is the trusted end of the system; the host daemon it talks to is
// not.
//
// The pieces, each in its own file:
//
//   - the backup key K (key.go): 256 random bits per account, and the age
//     X25519 identity derived from it, so that a backup needs only the
//     public recipient and stock age can decrypt with the exported identity;
//   - the 64-digit key (keytext.go, qr.go): K written as 64 hex digits and a
//     check group, for users who keep K themselves;
//   - backups (archive.go, extract.go): an age file of a tar stream padded
//     to its Padmé length (padme.go), made and restored in constant memory,
//     restored into a temporary folder and moved into place only once the
//     whole file has verified, in whole or some paths only; read without
//     writing for ls and verify (ReadBackup); exclude patterns
//     (exclude.go); the temporary files and folders of backups and
//     restores, locked while in use, and the cleanup of those killed runs
//     left (leftover.go);
//   - the vault (conn.go, trust.go, vault.go): cofferd's HTTP API, the
//     identity bundle pinned under the provisioning key, OPAQUE (RFC 9807)
//     through github.com/bytemare/opaque, and every receipt checked;
//   - the release log (log_config.go, log_trust.go, log_notice.go): the
//     configuration's pin of a log policy and its view of the log, and the
//     check every contact makes, after the provisioning signature: the
//     vault's bundle and release logged under a witnessed, consistent
//     checkpoint and neither revoked (client/logcheck follows the log);
//     upgrades with the same keys shown, new keys only with consent;
//   - the configuration file (config.go);
//   - realm sets (protocol/REALMS.md): K behind a password at t of n vaults.
//     realm_config.go is the configuration's `realms` object, its checks and
//     the operator warnings; realm_bounds.go the per-realm limit, the guess
//     bounds and the tries left; realm_conn.go one realm per run (pinned
//     exactly as the single vault, every receipt bound to its request and
//     through per-realm rollback tripwires), the manifest endpoints, tickets
//     and sessions; realm_set.go RealmSet and its errors; realm_register.go
//     Register; realm_recover.go Recover (agree, exactly t evaluations,
//     fallback, lying realms); realm_evidence.go the evidence file and
//     CheckEvidence; realm_status.go Probe, for `coffer realms`;
//     realm_resume.go the resume blob (5.7); realm_change.go ChangePassword
//     and the forward-only carrying of a version (C1-C7, also what a
//     recovery does with an unfinished change); realm_delete.go Delete;
//     realm_repair.go Repair; realm_rotate.go RotateKey and the handover;
//   - printing names (names.go): a name from a backup or the filesystem is
//     escaped wherever it is printed, so it cannot fake output or drive the
//     terminal.
//
// SPEC.md beside this file is the normative description of what this
// package writes and reads (backup format, key derivation, 64-digit key,
// configuration).
package client
