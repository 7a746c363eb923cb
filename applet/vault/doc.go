// Package vault is Coffer's vault logic: OPAQUE registration and login with a
// durable, attempt-limited record per user, the sealed session that follows a
// login, and the vault's identity.
//
// It is portable Go with no hardware imports. The same code runs inside the
// Trusted Applet on a USB armory, in the firmware under QEMU, and natively as
// the software vault; what differs is the Store it is given (and who holds the
// keys that seal it).
//
// The rules it enforces are those of DESIGN.md. The one that matters most: a
// guess against a real record is counted, durably, before the vault evaluates
// the record's OPRF key. LoginStart stages the counter increment, waits for the
// store to commit it, and only then computes KE2. When the increment reaches
// the limit, the record that is committed is already the tombstone; the final
// KE2 is answered from a copy in RAM, which that login's valid KE3 writes back
// with one try left and anything else (a failed KE3, expiry, a reboot)
// forgets. KE3 otherwise changes nothing durable: a login becomes a success
// only when its client confirms, in the session, that it received the
// release (protocol/SPEC.md, "Counting").
//
// The same vault is also a realm (protocol/REALMS.md): the files realm_*.go
// keep one share of a t-of-n key per account, under its own store keys, and
// apply the same rules to it: an evaluation is committed before the share is
// read, the final ticket alone holds the record in RAM and revives it once,
// and an unlock becomes a success only when its client confirms it.
package vault
