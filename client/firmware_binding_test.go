package client

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// The identity bundle says which firmware the vault ran when it was
// provisioned; only the vault's signed status, bound to the client's fresh
// nonce, says which firmware it runs now. These tests play the host that
// tries to make the two differ.

// The host keeps serving the pinned bundle while the device runs other
// firmware: here a logged release the log revokes, which the pinned bundle,
// naming the release before it, would hide. Refused at the next contact,
// naming both hashes, whatever the user allows; the pin does not move.
func TestRunningFirmwareMustBeTheBundles(t *testing.T) {
	ctx := context.Background()
	fw1, fw2 := sum256("release 1"), sum256("release 2, revoked")
	f := newFixture(t, fakehost.Options{FirmwareHash: fw1})
	f.connect()
	pinned, vaultInfo := f.cfg.BundleHash, *f.cfg.Vault
	served := f.host.SignIdentity(nil, f.host.VaultIdentity()) // the pinned bundle, as the host kept it
	f.log.release(2, "usbarmory", fw2)
	f.log.revoke(releaselog.KindRelease, fw2, "key extraction bug")
	f.host.Boot(fw2)
	f.host.SetIdentity(served)
	for _, insecure := range []bool{false, true} {
		f.opts.AllowUnlogged, f.opts.AllowInsecure = insecure, insecure
		_, err := Connect(ctx, f.cfg, f.opts)
		if !errors.Is(err, ErrFirmwareMismatch) || !strings.Contains(err.Error(), hex.EncodeToString(fw1)) ||
			!strings.Contains(err.Error(), hex.EncodeToString(fw2)) {
			t.Fatalf("the pinned bundle in front of other firmware (insecure=%v): %v", insecure, err)
		}
		if f.cfg.BundleHash != pinned || f.cfg.Vault.FirmwareHash != vaultInfo.FirmwareHash {
			t.Fatal("the pin moved")
		}
	}
}

// A realm is checked the same way, and refused by name.
func TestRealmRunningFirmwareMustBeTheBundles(t *testing.T) {
	ctx := context.Background()
	f := newRealmFixture(t, 2, 3, realmOptions{})
	if _, err := f.set().Probe(ctx); err != nil {
		t.Fatal(err)
	}
	c := f.realmByName("C")
	served, _ := protocol.Encode(protocol.TypeIdentity, c.bundle)
	running := sum256("other firmware of C")
	c.boot(t, running)
	c.dev.mu.Lock()
	c.dev.rewrite = func(typ protocol.Type, _, reply []byte) []byte {
		if typ == protocol.TypeIdentity {
			return served
		}
		return reply
	}
	c.dev.mu.Unlock()
	st, err := f.set().Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range st.Realms {
		bad := rr.Name == "C"
		if bad != (rr.Err != nil) || bad && (!errors.Is(rr.Err, ErrFirmwareMismatch) || !strings.Contains(rr.Err.Error(), hex.EncodeToString(running)) ||
			!strings.Contains(rr.Err.Error(), hex.EncodeToString(c.bundleIdentity(t).FirmwareHash))) {
			t.Errorf("realm %s: %v", rr.Name, rr.Err)
		}
	}
}

// The host boots the device back into an older logged release (same
// release key, so the same keys) and serves that release's bundle, logged
// and unrevoked: everything checks out but the version. A changed bundle
// with the pinned keys is an upgrade only to a strictly higher release
// version; this is a downgrade, refused naming both versions, without
// asking the user, whatever they allow. An equal version is no upgrade
// either; a higher one still is.
func TestOlderLoggedReleaseIsADowngrade(t *testing.T) {
	ctx := context.Background()
	fw1, fw2 := sum256("release 1"), sum256("release 2")
	f := newFixture(t, fakehost.Options{FirmwareHash: fw1}) // logged as version 1
	k := f.register("pw", 5)
	f.host.Boot(fw2)
	f.log.release(2, "usbarmory", fw2)
	f.log.bundle(f.host.Provision())
	f.mustLogin("pw", k).Close(ctx)
	if l := f.cfg.Vault.Logged; l == nil || l.ReleaseVersion != 2 {
		t.Fatalf("the upgrade to version 2 was not pinned: %+v", l)
	}
	pinned := f.cfg.BundleHash
	asked := false
	f.opts.AcceptNewIdentity = func(*IdentityChange) error { asked = true; return nil }

	refused := func(what, older string) {
		t.Helper()
		for _, insecure := range []bool{false, true} {
			f.opts.AllowUnlogged, f.opts.AllowInsecure = insecure, insecure
			_, err := Connect(ctx, f.cfg, f.opts)
			if !errors.Is(err, ErrDowngrade) || !strings.Contains(err.Error(), "version "+older) || !strings.Contains(err.Error(), "version 2") {
				t.Fatalf("%s (insecure=%v): %v", what, insecure, err)
			}
			if asked || f.cfg.BundleHash != pinned || f.cfg.Vault.Logged.ReleaseVersion != 2 {
				t.Fatalf("%s: asked %v, pin %s", what, asked, f.cfg.BundleHash)
			}
		}
	}
	f.host.Boot(fw1)
	f.host.Provision() // release 1's bundle again: the vault itself serves it
	refused("an older logged release", "1")

	fw2b := sum256("release 2, another build")
	f.log.release(2, "usbarmory", fw2b)
	f.host.Boot(fw2b)
	f.log.bundle(f.host.Provision())
	refused("another release of the same version", "2")

	fw3 := sum256("release 3")
	f.log.release(3, "usbarmory", fw3)
	f.host.Boot(fw3)
	f.log.bundle(f.host.Provision())
	f.opts.AllowUnlogged, f.opts.AllowInsecure = false, false
	f.mustLogin("pw", k).Close(ctx)
	if f.cfg.Vault.Logged.ReleaseVersion != 3 || asked {
		t.Fatalf("the upgrade to version 3: %+v (asked %v)", f.cfg.Vault.Logged, asked)
	}
}

// unreadableLog is a log source that cannot be reached.
type unreadableLog struct{}

func (unreadableLog) Checkpoint(context.Context) ([]byte, error) {
	return nil, errors.New("connection refused")
}

func (unreadableLog) Entries(context.Context, uint64, uint64, uint64) ([][]byte, error) {
	return nil, errors.New("connection refused")
}

// The unlogged paths keep the floor: a contact let through --insecure while
// the log cannot be read, and a bundle of unlogged firmware with the same
// keys the user consented to, forget neither the release version the keys
// were seen to run; an older logged release is still a downgrade after
// them.
func TestDowngradeFloorSurvivesUnloggedContacts(t *testing.T) {
	ctx := context.Background()
	fw1, fw2 := sum256("release 1"), sum256("release 2")
	f := newFixture(t, fakehost.Options{FirmwareHash: fw1})
	f.connect()
	f.host.Boot(fw2)
	f.log.release(2, "usbarmory", fw2)
	f.log.bundle(f.host.Provision())
	f.connect()

	// The log cannot be read: --insecure lets the same bundle through.
	f.opts.AllowUnlogged, f.opts.LogSource = true, unreadableLog{}
	f.connect()
	f.opts.AllowUnlogged, f.opts.LogSource = false, f.log.src

	// Unlogged firmware with the same keys, which the user accepts.
	f.host.Boot(sum256("a development build"))
	f.host.Provision()
	f.opts.AllowUnlogged = true
	f.opts.AcceptNewIdentity = func(*IdentityChange) error { return nil }
	f.connect()
	if f.cfg.Vault.Logged != nil {
		t.Fatalf("an unlogged bundle pinned as logged: %+v", f.cfg.Vault.Logged)
	}

	f.host.Boot(fw1)
	f.host.Provision()
	if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrDowngrade) || !strings.Contains(err.Error(), "version 1") ||
		!strings.Contains(err.Error(), "version 2") {
		t.Fatalf("release 1 after release 2 and an unlogged build: %v", err)
	}
}

// The host replays a signed status from an earlier contact: the vault's
// own, with the right firmware hash, but it answers another nonce. Every
// contact asks for a fresh one, so the replay is refused at the next
// contact, and at an explicit status request.
func TestReplayedStatusRefused(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	f.register("pw", 0)
	replayFirstReply(f, protocol.TypeStatus)
	c := f.connect() // its status is the one the host keeps
	if _, err := c.Status(context.Background()); !errors.Is(err, protocol.ErrReplayedStatus) {
		t.Fatalf("a replayed status was accepted: %v", err)
	}
	if _, err := Connect(context.Background(), f.cfg, f.opts); !errors.Is(err, protocol.ErrReplayedStatus) {
		t.Fatalf("a contact with a replayed status: %v", err)
	}
}

func TestRealmReplayedStatusRefused(t *testing.T) {
	ctx := context.Background()
	f := newRealmFixture(t, 2, 3, realmOptions{})
	b := f.realmByName("B")
	var (
		mu  sync.Mutex
		old []byte
	)
	b.dev.mu.Lock()
	b.dev.rewrite = func(typ protocol.Type, _, reply []byte) []byte {
		if typ != protocol.TypeStatus {
			return reply
		}
		mu.Lock()
		defer mu.Unlock()
		if old == nil {
			old = reply
		}
		return old
	}
	b.dev.mu.Unlock()
	if _, err := f.set().Probe(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.set().Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range st.Realms {
		if bad := rr.Name == "B"; bad != (rr.Err != nil) || bad && !errors.Is(rr.Err, protocol.ErrReplayedStatus) {
			t.Errorf("realm %s: %v", rr.Name, rr.Err)
		}
	}
}

// withoutFirmware turns a status reply into the one a vault from before
// the firmware hash was signed would send: the same status without field
// 8, signed with the vault's key.
func withoutFirmware(t testing.TB, key ed25519.PrivateKey, reply []byte) []byte {
	t.Helper()
	var sr protocol.StatusReply
	if err := protocol.Decode(reply, protocol.TypeStatus, &sr); err != nil {
		t.Fatalf("the vault's status reply: %v", err)
	}
	var body map[uint64]any
	if err := cbor.Unmarshal(sr.Body, &body); err != nil {
		t.Fatal(err)
	}
	delete(body, 8)
	em, _ := cbor.CoreDetEncOptions().EncMode()
	b, err := em.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := protocol.Encode(protocol.TypeStatus, &protocol.StatusReply{Body: b,
		Signature: ed25519.Sign(key, append([]byte("coffer/v1 status\x00"), b...))})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An old firmware's status carries no firmware hash: it cannot say what
// runs, and is refused, at first contact as at every other.
func TestStatusWithoutFirmwareRefused(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	key := f.host.SigningKey()
	f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeStatus {
			return false
		}
		w.Write(withoutFirmware(t, key, f.host.Vault(r.Context(), body)))
		return true
	})
	f.opts.AllowUnlogged, f.opts.AllowInsecure = true, true
	_, err := Connect(context.Background(), f.cfg, f.opts)
	if !errors.Is(err, protocol.ErrMalformed) || !strings.Contains(err.Error(), "firmware hash") {
		t.Fatalf("a status without a firmware hash: %v", err)
	}
	if f.cfg.BundleHash != "" {
		t.Fatal("pinned")
	}
}

func TestRealmStatusWithoutFirmwareRefused(t *testing.T) {
	ctx := context.Background()
	f := newRealmFixture(t, 2, 3, realmOptions{})
	if _, err := f.set().Probe(ctx); err != nil {
		t.Fatal(err)
	}
	a := f.realmByName("A")
	a.dev.mu.Lock()
	a.dev.rewrite = func(typ protocol.Type, _, reply []byte) []byte {
		if typ != protocol.TypeStatus {
			return reply
		}
		return withoutFirmware(t, a.signing, reply)
	}
	a.dev.mu.Unlock()
	st, err := f.set().Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range st.Realms {
		if bad := rr.Name == "A"; bad != (rr.Err != nil) || bad && (!errors.Is(rr.Err, protocol.ErrMalformed) || !strings.Contains(rr.Err.Error(), "firmware hash")) {
			t.Errorf("realm %s: %v", rr.Name, rr.Err)
		}
	}
}

// boot restarts the realm's device on its store running other firmware:
// same keys, and no bundle for the new identity.
func (r *testRealm) boot(t testing.TB, firmware []byte) {
	t.Helper()
	id := r.dev.v.Identity()
	v, err := vault.New(context.Background(), r.store, vault.Options{Insecure: id.Insecure, MaxLimit: id.MaxLimit, Name: id.Name,
		FirmwareHash: firmware, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.dev.mu.Lock()
	old := r.dev.v
	r.dev.v = v
	r.dev.mu.Unlock()
	old.Close()
	t.Cleanup(v.Close)
}

// bundleIdentity is the identity its bundle signs.
func (r *testRealm) bundleIdentity(t testing.TB) *protocol.Identity {
	t.Helper()
	var id protocol.Identity
	if err := protocol.Unmarshal(r.bundle.Body, &id); err != nil {
		t.Fatal(err)
	}
	return &id
}
