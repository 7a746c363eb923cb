package main

// End to end against realms whose operators attack (protocol/REALMS.md 11,
// 12.4, 14): three realms, each a softvault process behind its own cofferd,
// and on each coffer ⇄ cofferd hop the operator (realmHop). A lying realm, a
// rolled-back realm and a replayed receipt are each detected, the realm is
// named, and the backup still restores from the two honest ones.

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// TestE2ERealmAdversaries: one realm set, three operators turning on the
// user in turn: realm-1's replays a probe reply (as recorded, then its
// receipt re-sealed with the realm's key), realm-3's lies about its
// evaluation with the realm's keys, realm-2's puts its vault's state back
// to an older copy (then hides that from the store sequence). Each time the
// realm is named, and the backup restores from the other two.
func TestE2ERealmAdversaries(t *testing.T) {
	start := time.Now()
	rs := newRealms(t, 3)
	hops := make([]*realmHop, len(rs))
	for i, r := range rs {
		hops[i] = startRealmHop(t, r.daemon.url())
		r.server = hops[i].url()
	}
	keysA, keysC := readOperatorKeys(t, rs[0]), readOperatorKeys(t, rs[2])
	u, src, backup := realmsUser(t, rs)
	good := u.env["COFFER_PASSWORD"]
	restore := func(what string) e2eResult {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		r := u.ok("restore", backup, "-C", out, "--insecure")
		sameTree(t, src, filepath.Join(out, "documents"))
		t.Logf("restore with %s:\n%s", what, r.stderr)
		return r
	}

	// 1. Replayed receipt at realm-1. Its operator keeps what cofferd
	// answered to a probe of `coffer realms` (which counts nothing, so that
	// probe's receipt is the last this device has from realm-1: no store
	// sequence or running total tells it apart) and answers a later probe
	// with it.
	var recorded struct {
		sync.Mutex
		raw   []byte
		inner *protocol.RealmReceiptReply
	}
	hops[0].set(func(typ protocol.Type, request, reply []byte) []byte {
		if typ == protocol.TypeRealmProbe {
			inner := openReply(t, keysA, typ, request, reply, &protocol.RealmReceiptReply{})
			recorded.Lock()
			recorded.raw, recorded.inner = reply, inner.(*protocol.RealmReceiptReply)
			recorded.Unlock()
		}
		return reply
	})
	u.ok("realms", "--insecure")
	hops[0].set(nil)
	recorded.Lock()
	raw, earlier := recorded.raw, recorded.inner
	recorded.Unlock()
	if earlier == nil {
		t.Fatal("realm-1's hop saw no probe during `coffer realms`")
	}

	// As recorded: the reply is sealed to the earlier request's HPKE
	// context and does not open for the new one.
	var replays atomic.Int32
	hops[0].set(replayOnce(&replays, func(typ protocol.Type, request []byte) []byte { return raw }))
	r := restore("realm-1's probe answered with an earlier reply")
	wantRealmLine(t, r.stderr, "realm-1", "the realm's reply does not open")
	if replays.Load() != 1 {
		t.Fatalf("realm-1's hop replayed %d probes, want 1", replays.Load())
	}

	// Re-sealed: realm-1 is a software realm, so its operator has its HPKE
	// key (12.4), opens the new request and seals the earlier receipt, as
	// signed by the vault, to it. The receipt names another request hash
	// and client nonce.
	hops[0].set(replayOnce(&replays, func(typ protocol.Type, request []byte) []byte {
		return sealReply(t, keysA, typ, request, earlier)
	}))
	r = restore("realm-1's probe answered with an earlier receipt, re-sealed")
	wantRealmLine(t, r.stderr, "realm-1", "it answers another request")
	if replays.Load() != 2 {
		t.Fatalf("realm-1's hop replayed %d probes, want 2", replays.Load())
	}

	// 2. A lying realm: realm-3's operator answers each evaluation with one
	// under another scalar, with a valid proof for that scalar, re-signs
	// the receipt with realm-3's key over the new evaluation hash and
	// re-seals the reply. One wrong password first (counted at realm-1 and
	// realm-2, the first two of equals) leaves realm-3 with the most tries
	// left, so a recovery asks it first.
	u.env["COFFER_PASSWORD"] = "wrong horse"
	u.fails([]string{"wrong password;"}, "key", "export-age", "--insecure")
	u.env["COFFER_PASSWORD"] = good
	var lies atomic.Int32
	hops[2].set(lie(t, keysC, &lies))
	r = restore("realm-3 lying")
	hops[2].set(nil)
	lied := r.stderr
	if lies.Load() != 1 {
		t.Fatalf("realm-3's operator lied %d times, want once", lies.Load())
	}
	line := wantRealmLine(t, r.stderr, "realm-3", "LYING: returned an evaluation that does not match its key share (evidence in ")
	for _, honest := range []string{"realm-1", "realm-2"} {
		wantRealmLine(t, r.stderr, honest, "tries left") // the fallback: both served
	}
	m := regexp.MustCompile(`evidence in (.+)\)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no evidence file in %q", line)
	}
	if filepath.Dir(m[1]) != filepath.Dir(u.config) {
		t.Fatalf("evidence written to %s, not beside the configuration", m[1])
	}
	evidence, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	provC, _ := hex.DecodeString(rs[2].provKey)
	f, err := client.CheckEvidence(evidence, ed25519.PublicKey(provC))
	if err != nil {
		t.Fatalf("the evidence against realm-3 does not check out: %v", err)
	}
	if !f.RealmKey.Equal(keysC.signing.Public()) || f.Identity == nil || f.Receipt.Kind != protocol.RealmReceiptAttempt {
		t.Fatalf("the evidence proves something else: %+v", f)
	}
	t.Logf("evidence %s: realm %x lied (%v)", m[1], []byte(f.RealmKey[:8]), f.Reason)
	provA, _ := hex.DecodeString(rs[0].provKey)
	if _, err := client.CheckEvidence(evidence, ed25519.PublicKey(provA)); err == nil {
		t.Fatal("the evidence against realm-3 checks out as realm-1's")
	}

	// 3. A rolled-back realm: realm-2's operator copies its state folder,
	// a wrong password is then counted there, and the operator puts the
	// copy back, which forgets that guess (the software vault cannot tell,
	// 12.4). The store sequence realm-2 signs has gone back.
	rs[1].vault.proc.kill()
	rs[1].daemon.waitConnected(false, 10*time.Second)
	snapshot := t.TempDir()
	copyState(t, rs[1].vault.state, snapshot)
	rs[1].vault.serve()
	rs[1].daemon.waitConnected(true, 30*time.Second)
	u.env["COFFER_PASSWORD"] = "wrong horse"
	wrong := reTriesLeftAcross.FindStringSubmatch(u.fails([]string{"wrong password;"}, "key", "export-age", "--insecure").stderr)
	u.env["COFFER_PASSWORD"] = good
	before := regexp.MustCompile(`(?m)^realm realm-2: (\d+) tries left`).FindStringSubmatch(lied)
	if wrong == nil || before == nil || atoi(t, wrong[3]) != atoi(t, before[1])-1 {
		t.Fatalf("the wrong password was not counted at realm-2: %q after %q", wrong, before)
	}
	rs[1].vault.proc.kill()
	rs[1].daemon.waitConnected(false, 10*time.Second)
	copyState(t, snapshot, rs[1].vault.state)
	rs[1].vault.serve()
	rs[1].daemon.waitConnected(true, 30*time.Second)
	r = restore("realm-2 rolled back")
	line = wantRealmLine(t, r.stderr, "realm-2", "ROLLBACK: the vault signed store sequence")
	for _, honest := range []string{"realm-1", "realm-3"} {
		wantRealmLine(t, r.stderr, honest, "tries left")
	}

	// The operator then hides the rollback from the store sequence: every
	// start of the vault writes its anchor once, at the next sequence, so
	// restarting it enough times takes the sequence past the highest this
	// device has seen. The account's running totals at realm-2 are still
	// the copy's: fewer attempts than this device has seen.
	seq := regexp.MustCompile(`store sequence (\d+), but this client has already seen (\d+)`).FindStringSubmatch(line)
	if seq == nil {
		t.Fatalf("no store sequences in %q", line)
	}
	for i := atoi(t, seq[1]); i <= atoi(t, seq[2]); i++ {
		rs[1].vault.proc.kill()
		rs[1].vault.serve()
	}
	rs[1].daemon.waitConnected(true, 30*time.Second)
	r = restore("realm-2 rolled back, its store sequence pushed past the highest seen")
	wantRealmLine(t, r.stderr, "realm-2", "ROLLBACK: the vault counts")
	for _, honest := range []string{"realm-1", "realm-3"} {
		wantRealmLine(t, r.stderr, honest, "tries left")
	}
	t.Logf("TestE2ERealmAdversaries took %v", time.Since(start).Round(100*time.Millisecond))
}

// wantRealmLine returns the line of a recovery report about the realm name
// and fails the test unless it says want.
func wantRealmLine(t *testing.T, report, name, want string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^realm ` + regexp.QuoteMeta(name) + `: (.*)$`).FindStringSubmatch(report)
	if m == nil || !strings.Contains(m[1], want) {
		t.Fatalf("the report about realm %s does not say %q:\n%s", name, want, report)
	}
	return m[0]
}

// replayOnce answers the next probe with what answer gives instead of the
// realm's reply, then passes everything through.
func replayOnce(n *atomic.Int32, answer func(typ protocol.Type, request []byte) []byte) func(protocol.Type, []byte, []byte) []byte {
	var done atomic.Bool
	return func(typ protocol.Type, request, reply []byte) []byte {
		if typ != protocol.TypeRealmProbe || done.Swap(true) {
			return reply
		}
		n.Add(1)
		return answer(typ, request)
	}
}

// openReply opens a realm request and its reply with the realm's HPKE key,
// as its operator can, and decodes the reply's inner message into inner.
func openReply(t *testing.T, k *operatorKeys, typ protocol.Type, request, reply []byte, inner protocol.Message) protocol.Message {
	var req protocol.RealmRequest
	if err := protocol.Decode(request, typ, &req); err != nil {
		t.Errorf("operator: %v", err)
		return inner
	}
	var body protocol.Empty
	_, secret, err := protocol.OpenRealmRequest(k.hpke, typ, &req, &body)
	if err != nil {
		t.Errorf("operator: %v", err)
		return inner
	}
	defer secret.Wipe()
	var rr protocol.RealmReply
	if err := protocol.Decode(reply, typ, &rr); err != nil {
		t.Errorf("operator: %v", err)
		return inner
	}
	if err := secret.OpenReply(&rr, inner); err != nil {
		t.Errorf("operator: %v", err)
	}
	return inner
}

// sealReply seals inner as the reply to request, with the realm's HPKE key.
func sealReply(t *testing.T, k *operatorKeys, typ protocol.Type, request []byte, inner protocol.Message) []byte {
	var req protocol.RealmRequest
	var body protocol.Empty
	if err := protocol.Decode(request, typ, &req); err != nil {
		t.Errorf("operator: %v", err)
		return nil
	}
	_, secret, err := protocol.OpenRealmRequest(k.hpke, typ, &req, &body)
	if err != nil {
		t.Errorf("operator: %v", err)
		return nil
	}
	defer secret.Wipe()
	sealed, err := secret.SealReply(rand.Reader, inner)
	if err != nil {
		t.Errorf("operator: %v", err)
		return nil
	}
	out, err := protocol.Encode(typ, sealed)
	if err != nil {
		t.Errorf("operator: %v", err)
	}
	return out
}

// lie is a compromised realm's operator with its keys: every evaluation
// the vault answers is replaced by the evaluation under another scalar,
// with a valid DLEQ proof for that scalar's public key, the receipt's
// evaluation hash recomputed over it and re-signed with the realm's key,
// and the reply re-sealed to the client. Everything but the proof against
// the realm's registered share checks out.
func lie(t *testing.T, k *operatorKeys, n *atomic.Int32) func(protocol.Type, []byte, []byte) []byte {
	other := make([]byte, 32)
	rand.Read(other[:31]) // below the group order: a canonical nonzero scalar
	return func(typ protocol.Type, request, reply []byte) []byte {
		if typ != protocol.TypeRealmEvaluate {
			return reply
		}
		var req protocol.RealmRequest
		var body protocol.RealmEvaluate
		if err := protocol.Decode(request, typ, &req); err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		_, secret, err := protocol.OpenRealmRequest(k.hpke, typ, &req, &body)
		if err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		defer secret.Wipe()
		var rr protocol.RealmReply
		var inner protocol.RealmEvaluateReply
		if err := protocol.Decode(reply, typ, &rr); err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		if err := secret.OpenReply(&rr, &inner); err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		if len(inner.Evaluated) == 0 {
			return reply // locked: nothing to lie about
		}
		rc, err := inner.Receipt.Verify(k.signing.Public().(ed25519.PublicKey))
		if err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		v := rc.Held(body.VersionID)
		if v == nil {
			t.Errorf("lying operator: the receipt does not hold the version evaluated")
			return reply
		}
		if inner.Evaluated, inner.Proof, err = realmkey.EvaluateBlinded(other, body.Blinded); err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		rc.EvaluationHash = protocol.EvaluationHash(v.ManifestHash, v.Index, body.Blinded, inner.Evaluated, inner.Proof, inner.Handle)
		if inner.Receipt, err = protocol.SignRealmReceipt(k.signing, rc); err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		sealed, err := secret.SealReply(rand.Reader, &inner)
		if err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		out, err := protocol.Encode(typ, sealed)
		if err != nil {
			t.Errorf("lying operator: %v", err)
			return reply
		}
		n.Add(1)
		return out
	}
}
