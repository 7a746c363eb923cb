package qemutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// realmInstance is one emulated device serving as one realm: its own state
// folder (store image, RPMB anchor, fake fuse), the QEMU running on it (nil
// while it is stopped) and the identity the test pinned at its first boot.
type realmInstance struct {
	t    *testing.T
	name string
	dir  string
	vm   *vm
	id   *protocol.Identity
}

var errInstanceStopped = errors.New("qemutest: this firmware instance is stopped")

// rt is the realm's round trip; it fails while the instance is stopped, as
// a host's relay to a device that is off would.
func (in *realmInstance) rt(ctx context.Context, req []byte) ([]byte, error) {
	if in.vm == nil {
		return nil, errInstanceStopped
	}
	return in.vm.rt(ctx, req)
}

// start boots the instance on its folder. The first boot pins its identity;
// a later one must find the same store and the same identity.
func (in *realmInstance) start(ctx context.Context) {
	in.t.Helper()
	in.vm = boot(in.t, in.dir)
	id, err := testclient.FetchIdentity(ctx, in.vm.rt, devProvisioningKey)
	if err != nil {
		in.t.Fatalf("%s: identity: %v", in.name, err)
	}
	if in.id == nil {
		if !strings.Contains(in.vm.status, "new store") {
			in.t.Fatalf("%s: first boot did not format a new store: %s", in.name, in.vm.status)
		}
		in.id = id
		return
	}
	if strings.Contains(in.vm.status, "new store") || !bytes.Equal(id.SigningKey, in.id.SigningKey) {
		in.t.Fatalf("%s: the reboot lost the vault (%s)", in.name, in.vm.status)
	}
}

// stop ends QEMU with SIGKILL: a power cut for the emulated device.
func (in *realmInstance) stop() {
	in.vm.kill()
	in.vm = nil
}

// Three firmware instances in QEMU, each with its own store, anchor and
// identity, serve one 2-of-3 realm version (protocol/REALMS.md 5, 7, 9):
//
//   - open registration at all three; a recovery evaluates at two, and the
//     combined output equals the dealt key's own; the unlock keys it derives
//     open sessions there and, through a purpose-1 challenge that counts
//     nothing, at the third; each session confirms and commits the version;
//   - with one instance stopped, the other two recover;
//   - a wrong password is counted (signed attempt receipts: tries_left down)
//     exactly at the realms that evaluated it, and not at the one that was
//     off, which still holds its state after booting again;
//   - N1 across a power cut: QEMU is killed right after a counted
//     evaluation's reply; booted again, the realm's probe still counts it.
//
// The three run at once, booted one after another (each QEMU holds about
// 180 MB of host memory; between requests the emulated CPU sleeps in WFI).
func TestRealmsThreeInstances(t *testing.T) {
	firmwareImage(t) // skip, saying why, before anything is started
	qemuBinary(t)
	ctx := context.Background()
	const limit = 5
	password := []byte("correct horse battery staple")
	wrong := []byte("correct horse battery stable")

	var ins []*realmInstance
	var realms []*realmtest.Realm
	for i := 1; i <= 3; i++ {
		in := &realmInstance{t: t, name: fmt.Sprintf("instance %d", i), dir: t.TempDir()}
		in.start(ctx)
		ins = append(ins, in)
		realms = append(realms, &realmtest.Realm{RoundTrip: in.rt, Identity: in.id, UserID: []byte(fmt.Sprintf("alice-at-realm-%d", i))})
	}
	for i := range ins {
		for j := i + 1; j < len(ins); j++ {
			if bytes.Equal(ins[i].id.SigningKey, ins[j].id.SigningKey) || bytes.Equal(ins[i].id.HPKEKey, ins[j].id.HPKEKey) {
				t.Fatalf("instances %d and %d share a key", i+1, j+1)
			}
		}
	}

	ver, err := realmtest.NewVersion(realms, password, realmtest.VersionOptions{Threshold: 2, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	want, err := ver.Dealing.Evaluate(realmkey.Input(ver.SetID, password))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := ver.RegisterAll(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("open registration at three instances: %s", ms(time.Since(start)))
	for i, r := range realms {
		p, err := r.Probe(ctx)
		if err != nil {
			t.Fatalf("probe %d: %v", i+1, err)
		}
		held := p.Held(ver.ID())
		if p.State != protocol.RealmLive || held == nil || held.Status != protocol.VersionPending || held.Index != uint(i+1) ||
			!bytes.Equal(held.ManifestHash, ver.ManifestHash) || p.TriesLeft != limit || p.AttemptsTotal != 0 {
			t.Fatalf("probe %d after registering: %s", i+1, brief(p))
		}
	}

	// Recovery at realms 1 and 2; realm 3 is opened without counting, and
	// every session confirms its unlock and commits the version.
	start = time.Now()
	rec := recoverAt(t, ver, password, want, 1, 2)
	t.Logf("evaluation at two instances, proofs checked, combined: %s", ms(time.Since(start)))
	for m, e := range rec.Evaluations {
		if e.Receipt.TriesLeft != limit-1 || e.Receipt.AttemptsTotal != 1 {
			t.Fatalf("attempt receipt of realm %d: %s", rec.Indices[m], brief(e.Receipt))
		}
	}
	keys := unlockKeys(t, ver, rec.Output, true)
	sessions := unlockAt(t, ver, rec, keys)
	ticket, err := realms[2].Challenge(ctx, protocol.PurposeSession, ver.ID())
	if err != nil || ticket.Receipt.Kind != protocol.RealmReceiptChallenge {
		t.Fatalf("purpose-1 challenge at realm 3: %v", err)
	}
	s3, err := realms[2].Unlock(ctx, ticket, keys[2])
	if err != nil {
		t.Fatalf("unlock at realm 3: %v", err)
	}
	sessions = append(sessions, s3)
	for i, s := range sessions {
		c, err := s.Commit(ctx, ver.ID())
		if err != nil {
			t.Fatalf("commit at realm %d: %v", i+1, err)
		}
		if held := c.Held(ver.ID()); held == nil || held.Status != protocol.VersionCommitted || c.TriesLeft != limit {
			t.Fatalf("committed receipt of realm %d: %s", i+1, brief(c))
		}
	}
	if p := probe(t, realms[2], 3); p.AttemptsTotal != 0 || !committed(p, ver.ID()) {
		t.Fatalf("realm 3 counted an unlock through a challenge: %s", brief(p))
	}

	// Instance 1 goes off; 2 and 3 recover on their own.
	ins[0].stop()
	if _, err := realms[0].Probe(ctx); !errors.Is(err, errInstanceStopped) {
		t.Fatalf("the stopped instance answered: %v", err)
	}
	rec = recoverAt(t, ver, password, want, 2, 3)
	for _, s := range unlockAt(t, ver, rec, unlockKeys(t, ver, rec.Output, true)) {
		if _, err := s.Status(ctx); err != nil { // confirms the unlock: the counter is reset
			t.Fatal(err)
		}
	}

	// A wrong password at 2 and 3: counted at both, signed.
	before := []*protocol.RealmReceipt{nil, probe(t, realms[1], 2), probe(t, realms[2], 3)}
	rec, err = ver.Recover(ctx, wrong, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rec.Output, want) {
		t.Fatal("a wrong password gave the right output")
	}
	unlockKeys(t, ver, rec.Output, false)
	for m, e := range rec.Evaluations {
		i := rec.Indices[m]
		b := before[i-1]
		if b.TriesLeft != limit || e.Receipt.TriesLeft != b.TriesLeft-1 || e.Receipt.AttemptsTotal != b.AttemptsTotal+1 {
			t.Fatalf("realm %d: the wrong password was not counted: before %s, attempt %s", i, brief(b), brief(e.Receipt))
		}
	}

	// Instance 1 boots again: its committed version is there, and the
	// wrong password, which it never saw, is not counted there.
	ins[0].start(ctx)
	if p := probe(t, realms[0], 1); p.TriesLeft != limit || p.AttemptsTotal != 1 || !committed(p, ver.ID()) {
		t.Fatalf("realm 1 after its reboot: %s", brief(p))
	}

	// N1 across a power cut: the reply to a counted evaluation arrives,
	// QEMU is killed at once, and the count is there after the reboot.
	blind, err := realmkey.NewBlind(realmkey.Input(ver.SetID, wrong))
	if err != nil {
		t.Fatal(err)
	}
	e, err := realms[2].Evaluate(ctx, ver.ID(), blind.Blinded(), ver.ManifestHash, 3)
	blind.Wipe()
	if err != nil {
		t.Fatalf("evaluation before the power cut: %v", err)
	}
	if e.Receipt.Kind != protocol.RealmReceiptAttempt || e.Receipt.TriesLeft != limit-2 {
		t.Fatalf("evaluation before the power cut: %s", brief(e.Receipt))
	}
	ins[2].stop()
	ins[2].start(ctx)
	seq, _, _, err := readyNumbers(ins[2].vm.status)
	if err != nil {
		t.Fatal(err)
	}
	p := probe(t, realms[2], 3)
	if p.AttemptsTotal != e.Receipt.AttemptsTotal || p.TriesLeft != e.Receipt.TriesLeft || uint64(p.StoreSequence) < uint64(e.Receipt.StoreSequence) ||
		seq < uint64(e.Receipt.StoreSequence) {
		t.Fatalf("realm 3 went back across the power cut: attempt receipt %s; after the reboot: probe %s, ready line store sequence %d", brief(e.Receipt), brief(p), seq)
	}

	// The two rebooted instances recover together.
	rec = recoverAt(t, ver, password, want, 1, 3)
	for _, s := range unlockAt(t, ver, rec, unlockKeys(t, ver, rec.Output, true)) {
		if st, err := s.Status(ctx); err != nil {
			t.Fatalf("status after the last recovery: %v", err)
		} else if st.TriesLeft != limit {
			t.Fatalf("status after the last recovery: %s", brief(st))
		}
	}
}

// recoverAt evaluates password at the realms of indices and checks that
// the combined output is want.
func recoverAt(t *testing.T, ver *realmtest.Version, password, want []byte, indices ...int) *realmtest.Recovery {
	t.Helper()
	rec, err := ver.Recover(context.Background(), password, indices...)
	if err != nil {
		t.Fatalf("recovery at %v: %v", indices, err)
	}
	if !bytes.Equal(rec.Output, want) {
		t.Fatalf("recovery at %v: the combined output is not the dealt key's", indices)
	}
	return rec
}

// unlockKeys derives the unlock keys of output and checks whether it passes
// the manifest's check as expected.
func unlockKeys(t *testing.T, ver *realmtest.Version, output []byte, right bool) [][]byte {
	t.Helper()
	keys, ok, err := ver.UnlockKeysFor(output)
	if err != nil {
		t.Fatal(err)
	}
	if ok != right {
		t.Fatalf("manifest check passed: %v, want %v", ok, right)
	}
	return keys
}

// unlockAt opens a session at each realm that evaluated in rec.
func unlockAt(t *testing.T, ver *realmtest.Version, rec *realmtest.Recovery, keys [][]byte) []*realmtest.Session {
	t.Helper()
	var sessions []*realmtest.Session
	for m, i := range rec.Indices {
		s, err := ver.Realms[i-1].Unlock(context.Background(), &rec.Evaluations[m].Ticket, keys[i-1])
		if err != nil {
			t.Fatalf("unlock at realm %d: %v", i, err)
		}
		sessions = append(sessions, s)
	}
	return sessions
}

func probe(t *testing.T, r *realmtest.Realm, i int) *protocol.RealmReceipt {
	t.Helper()
	p, err := r.Probe(context.Background())
	if err != nil {
		t.Fatalf("probe %d: %v", i, err)
	}
	return p
}

// committed reports whether a receipt shows versionID committed.
func committed(r *protocol.RealmReceipt, versionID []byte) bool {
	held := r.Held(versionID)
	return held != nil && held.Status == protocol.VersionCommitted
}

// brief is the part of a receipt the test reasons about, for messages.
func brief(r *protocol.RealmReceipt) string {
	return fmt.Sprintf("{kind %d, state %d, tries_left %d of %d, failed_since_success %d, attempts_total %d, successes_total %d, store_sequence %d}",
		r.Kind, r.State, r.TriesLeft, r.Limit, r.FailedSinceSuccess, r.AttemptsTotal, r.SuccessesTotal, r.StoreSequence)
}
