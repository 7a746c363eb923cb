package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// PutManifest stores an encoded manifest at cofferd for this account
// (PUT /v1/realms/manifest, REALMS.md section 7). The host is not trusted
// with it: the client checks every manifest it gets back by hash and by the
// anchor's signature.
func (c *Conn) PutManifest(ctx context.Context, manifest []byte) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/realms/manifest", manifest, "put-manifest")
	return err
}

// GetManifest fetches the manifest whose hash is manifestHash
// (GET /v1/realms/manifest/{hex}) and checks it has that hash.
func (c *Conn) GetManifest(ctx context.Context, manifestHash []byte) ([]byte, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/realms/manifest/"+hex.EncodeToString(manifestHash), nil, "get-manifest")
	if err != nil {
		return nil, err
	}
	if len(b) > protocol.MaxManifestSize || !bytes.Equal(protocol.ManifestHash(b), manifestHash) {
		return nil, errors.New("get-manifest: cofferd served a manifest that does not have the hash asked for")
	}
	return b, nil
}

// realm is one realm of the set during one run of the client: its entry in
// the configuration (which this run updates: pins, sequence, last receipt),
// its connection and verified identity, and what this run learnt of it.
// Only the goroutine working on a realm touches it.
type realm struct {
	entry *RealmEntry
	pos   int // 0-based position in the configuration
	// retiring: a realm a repair took out of the set (13.3), reached only
	// to delete the old version there.
	retiring bool
	// deleting: this run deletes the key (13.2).
	deleting bool
	conn     *Conn
	id       *protocol.Identity
	account  []byte
	random   io.Reader
	// down says why this realm is unusable in this run (nil: usable).
	down error
	// probe is this run's signed probe.
	probe *protocol.RealmReceipt
	// bundle is the identity envelope as served, for evidence files.
	bundle []byte
	// last is the last receipt of this run.
	last *protocol.RealmReceipt
	// unlocked: a session opened and its first command confirmed the
	// unlock; sessionErr says why not, when one was tried.
	unlocked   bool
	sessionErr error
	// released is the unlocked receipt's count of failed evaluations of
	// this run's last unlock: what its confirmation releases (N5), shown
	// whether or not the confirmation's answer arrived.
	released uint
}

func (r *realm) name() string { return QuoteName(r.entry.Name) }

// connect checks the realm before anything is sent to it, exactly as the
// single vault (trust.go, log_trust.go): the identity bundle verified under
// the realm's provisioning key, checked against the configuration's release
// log and pinned on first use, a changed one refused (an upgrade with the
// same keys, logged, accepted and shown), an insecure one refused unless
// allowed, and its signed status read, fresh for this contact, naming the
// firmware the bundle names (REALMS.md 11, step 1); the store sequence
// tripwire applies to it. The account at its host is asked on first use
// and pinned.
func (r *realm) connect(ctx context.Context, httpClient *http.Client, vt *vaultTrust) error {
	e := r.entry
	conn, err := NewConn(e.Server, e.Token, httpClient)
	if err != nil {
		return err
	}
	r.conn = conn
	si, err := conn.Identity(ctx)
	if err != nil {
		return err
	}
	r.bundle, _ = protocol.Encode(protocol.TypeIdentity, si)
	pin := vaultPin{realm: e.Name, provisioningKey: e.ProvisioningKey, bundleHash: &e.BundleHash, vault: &e.Vault}
	id, st, err := vt.check(ctx, conn, pin, si)
	if err != nil {
		return err
	}
	r.id = id
	if err := r.sequence(st.StoreSequence); err != nil {
		return err
	}
	if e.Account == "" {
		a, err := conn.Account(ctx)
		if err != nil {
			return err
		}
		e.Account = hex.EncodeToString(a.UserID)
	}
	r.account, err = e.account()
	return err
}

func (r *realm) sequence(seq uint64) error {
	if seq < r.entry.HighestStoreSequence {
		return &RollbackError{Highest: r.entry.HighestStoreSequence, Got: seq}
	}
	r.entry.HighestStoreSequence = seq
	return nil
}

func (r *realm) nonce() ([]byte, error) {
	n := make([]byte, protocol.ClientNonceSize)
	_, err := io.ReadFull(r.random, n)
	return n, err
}

// call seals body to the realm as a request of type t, sends it and opens
// the sealed reply into reply. It returns the request's secret (its hash,
// and the export a session derives from) and the client nonce sent, which
// the reply's receipt must echo.
func (r *realm) call(ctx context.Context, t protocol.Type, body, reply protocol.Message) (*protocol.RealmSecret, []byte, error) {
	nonce, err := r.nonce()
	if err != nil {
		return nil, nil, err
	}
	req, secret, err := protocol.SealRealmRequest(r.id.HPKEKey, t, r.account, nonce, body)
	if err != nil {
		return nil, nil, err
	}
	var rr protocol.RealmReply
	if err := r.conn.Call(ctx, t, req, &rr); err != nil {
		secret.Wipe()
		return nil, nil, err
	}
	if err := secret.OpenReply(&rr, reply); err != nil {
		secret.Wipe()
		return nil, nil, fmt.Errorf("client: %s: the realm's reply does not open: %w", t, err)
	}
	return secret, nonce, nil
}

var realmKindNames = map[protocol.RealmReceiptKind]string{
	protocol.RealmReceiptRegistered: "registered",
	protocol.RealmReceiptAttempt:    "attempt",
	protocol.RealmReceiptLocked:     "locked",
	protocol.RealmReceiptUnlocked:   "unlocked",
	protocol.RealmReceiptCommitted:  "committed",
	protocol.RealmReceiptDeleted:    "deleted",
	protocol.RealmReceiptProbe:      "probe",
	protocol.RealmReceiptChallenge:  "challenge",
	protocol.RealmReceiptStatus:     "status",
}

// RealmReceiptKindName names a realm receipt kind as REALMS.md does.
func RealmReceiptKindName(k protocol.RealmReceiptKind) string {
	if s, ok := realmKindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind %d", k)
}

// receipt checks a realm's receipt: the signature under the pinned signing
// key, one of the expected kinds, this account, the request hash and client
// nonce of the request just sent (REALMS.md 6.3), and the realm's rollback
// tripwires: the store sequence and the account's running totals never go
// back, and an attempt receipt counts its own attempt. Then it becomes the
// realm's last receipt.
func (r *realm) receipt(sr *protocol.SignedRealmReceipt, requestHash, clientNonce []byte, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	rc, err := sr.Verify(r.id.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("client: %w: %v", ErrBadReceipt, err)
	}
	ok := false
	for _, k := range kinds {
		ok = ok || rc.Kind == k
	}
	switch {
	case !ok:
		return nil, fmt.Errorf("client: %w: it is a %q receipt", ErrBadReceipt, RealmReceiptKindName(rc.Kind))
	case !bytes.Equal(rc.UserID, r.account):
		return nil, fmt.Errorf("client: %w: it is for account %x, not %x", ErrBadReceipt, rc.UserID, r.account)
	case !bytes.Equal(rc.RequestHash, requestHash):
		return nil, fmt.Errorf("client: %w: it answers another request (request hash)", ErrBadReceipt)
	case !bytes.Equal(rc.ClientNonce, clientNonce):
		return nil, fmt.Errorf("client: %w: it answers another request (client nonce)", ErrBadReceipt)
	}
	if err := r.sequence(uint64(rc.StoreSequence)); err != nil {
		return nil, err
	}
	// This device's own delete is the one thing after which the account's
	// totals at the realm start again (6.3): the receipt is kept, and the
	// totals it shows (none) become the ones the tripwires compare with.
	// While the user deletes the key, a realm that shows no record at all
	// has what was asked, whoever deleted it (a delete whose receipt a cut
	// lost, or another device's): its totals start again too.
	deleted := rc.State == protocol.RealmNoRecord && (rc.Kind == protocol.RealmReceiptDeleted || r.deleting)
	if last := r.entry.LastReceipt; last != nil && !deleted {
		attempts, successes := uint64(rc.AttemptsTotal), uint64(rc.SuccessesTotal)
		if attempts < last.AttemptsTotal || (rc.Kind == protocol.RealmReceiptAttempt && attempts == last.AttemptsTotal) {
			return nil, &RollbackError{Highest: last.AttemptsTotal, Got: attempts, Attempts: true}
		}
		if successes < last.SuccessesTotal {
			return nil, fmt.Errorf("ROLLBACK: the realm counts %d successful unlocks on this account, but this device has already seen %d: "+
				"its storage was restored to an older copy, or the record deleted from another device; stopped", successes, last.SuccessesTotal)
		}
	}
	r.last = rc
	r.entry.LastReceipt = &RealmReceiptInfo{
		Kind:               RealmReceiptKindName(rc.Kind),
		VersionID:          hex.EncodeToString(rc.VersionID),
		Limit:              rc.Limit,
		TriesLeft:          rc.TriesLeft,
		FailedSinceSuccess: rc.FailedSinceSuccess,
		StoreSequence:      uint64(rc.StoreSequence),
		AttemptsTotal:      uint64(rc.AttemptsTotal),
		SuccessesTotal:     uint64(rc.SuccessesTotal),
	}
	return rc, nil
}

// probe asks for the realm's signed, nonce-bound state (type 16).
func (r *realm) doProbe(ctx context.Context) (*protocol.RealmReceipt, error) {
	var reply protocol.RealmReceiptReply
	secret, nonce, err := r.call(ctx, protocol.TypeRealmProbe, &protocol.RealmProbe{}, &reply)
	if err != nil {
		return nil, err
	}
	defer secret.Wipe()
	return r.receipt(&reply.Receipt, secret.RequestHash, nonce, protocol.RealmReceiptProbe)
}

// ticket is a realm's single-use ticket: a handle and the nonce an unlock
// tag covers.
type ticket struct {
	handle, nonce []byte
}

// challenge asks for a ticket that counts nothing (type 17): purpose 1 to
// open a session on versionID, purpose 2 to register it. A locked receipt
// comes back as the receipt with no ticket.
func (r *realm) challenge(ctx context.Context, purpose protocol.ChallengePurpose, versionID []byte) (*ticket, *protocol.RealmReceipt, error) {
	var reply protocol.RealmChallengeReply
	secret, nonce, err := r.call(ctx, protocol.TypeRealmChallenge, &protocol.RealmChallenge{Purpose: purpose, VersionID: versionID}, &reply)
	if err != nil {
		return nil, nil, err
	}
	defer secret.Wipe()
	rc, err := r.receipt(&reply.Receipt, secret.RequestHash, nonce, protocol.RealmReceiptChallenge, protocol.RealmReceiptLocked)
	if err != nil {
		return nil, nil, err
	}
	if rc.Kind == protocol.RealmReceiptLocked {
		return nil, rc, nil
	}
	if len(reply.Handle) != protocol.HandleSize || len(reply.TicketNonce) != protocol.TicketNonceSize {
		return nil, nil, fmt.Errorf("client: %w: a challenge receipt without its ticket", ErrBadReceipt)
	}
	if !bytes.Equal(rc.VersionID, versionID) {
		return nil, nil, fmt.Errorf("client: %w: the challenge receipt names another version", ErrBadReceipt)
	}
	return &ticket{handle: reply.Handle, nonce: reply.TicketNonce}, rc, nil
}

// realmSession is an open session at one realm (type 21), under keys from
// the unlock key and the unlock request's HPKE export (REALMS.md 5.4).
type realmSession struct {
	r      *realm
	handle []byte
	keys   protocol.SessionKeys
	seq    uint64
	// confirm is the hash of the unlocked receipt, carried by commands
	// until one is answered (rule N5): only then does the realm count the
	// unlock as a success.
	confirm []byte
	// Unlocked is the realm's unlocked receipt.
	unlocked *protocol.RealmReceipt
	// signed is the last command's receipt as signed (a delete keeps it).
	signed *protocol.SignedRealmReceipt
}

// unlock proves unlockKey over the ticket (type 19) and opens a session.
// A wrong tag is the realm's `authentication` error, returned as it is.
func (r *realm) unlock(ctx context.Context, t *ticket, unlockKey []byte) (*realmSession, error) {
	tag := realmkey.Tag(unlockKey, t.handle, t.nonce)
	var reply protocol.RealmReceiptReply
	secret, nonce, err := r.call(ctx, protocol.TypeRealmUnlock, &protocol.RealmUnlock{Handle: t.handle, Tag: tag}, &reply)
	if err != nil {
		return nil, err
	}
	defer secret.Wipe()
	rc, err := r.receipt(&reply.Receipt, secret.RequestHash, nonce, protocol.RealmReceiptUnlocked)
	if err != nil {
		return nil, err
	}
	// The confirmation releases what this receipt counts, which may be more
	// than this run's probe showed: evaluations made since count too.
	r.released = max(r.released, rc.FailedSinceSuccess)
	x := secret.SessionExport()
	defer clear(x)
	ss, err := realmkey.SessionSecret(unlockKey, x, t.nonce)
	if err != nil {
		return nil, err
	}
	defer clear(ss)
	s := &realmSession{r: r, handle: t.handle, confirm: protocol.RealmReceiptHash(&reply.Receipt), unlocked: rc}
	if s.keys, err = protocol.DeriveSessionKeys(ss, t.handle); err != nil {
		return nil, err
	}
	return s, nil
}

// randomUnlock sends an unlock with a random tag to a ticket, as after a
// wrong password (REALMS.md 11, step 6): the request looks like a right
// one, and the realm drops the ticket. Its answer is not needed.
func (r *realm) randomUnlock(ctx context.Context, t *ticket) {
	tag := make([]byte, protocol.RealmTagSize)
	if _, err := io.ReadFull(r.random, tag); err != nil {
		return
	}
	var reply protocol.RealmReceiptReply
	if secret, _, err := r.call(ctx, protocol.TypeRealmUnlock, &protocol.RealmUnlock{Handle: t.handle, Tag: tag}, &reply); err == nil {
		secret.Wipe()
	}
}

// command runs one session command and checks its receipt, bound to the
// command as sent (RealmCommandHash) and to its client nonce.
func (s *realmSession) command(ctx context.Context, cmd protocol.RealmCommandCode, versionID []byte, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	return s.send(ctx, &protocol.RealmCommand{Command: cmd, VersionID: versionID}, kinds...)
}

// send runs the session command c (its nonce and confirmation filled in
// here) and checks its receipt.
func (s *realmSession) send(ctx context.Context, c *protocol.RealmCommand, kinds ...protocol.RealmReceiptKind) (*protocol.RealmReceipt, error) {
	nonce, err := s.r.nonce()
	if err != nil {
		return nil, err
	}
	s.seq++
	seq := s.seq
	c.ClientNonce, c.Confirm = nonce, s.confirm
	sealed, err := protocol.SealMessage(&s.keys.ToVault, seq, s.handle, c)
	if err != nil {
		return nil, err
	}
	var reply protocol.SessionReply
	if err := s.r.conn.Call(ctx, protocol.TypeRealmSession, &protocol.Session{Handle: s.handle, Seq: seq, Sealed: sealed}, &reply); err != nil {
		return nil, err
	}
	if reply.Seq != seq {
		return nil, fmt.Errorf("client: realm session reply for sequence %d, sent %d", reply.Seq, seq)
	}
	var inner protocol.RealmReceiptReply
	if err := protocol.OpenMessage(&s.keys.ToClient, seq, s.handle, reply.Sealed, &inner); err != nil {
		return nil, fmt.Errorf("client: the realm's session reply does not open: %w", err)
	}
	s.confirm = nil // answered: the realm has counted the success
	s.signed = &inner.Receipt
	return s.r.receipt(&inner.Receipt, protocol.RealmCommandHash(s.handle, seq, sealed), nonce, kinds...)
}

func (s *realmSession) wipe() { s.keys.Wipe() }

// parallel runs f for each realm at once and waits for all.
func parallel(realms []*realm, f func(*realm)) {
	var wg sync.WaitGroup
	for _, r := range realms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(r)
		}()
	}
	wg.Wait()
}
