package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// The adversary is the provisioning-key holder, or a host with a stolen
// vault's keys: the log revoked one bundle of the vault, and it presents
// the same keys in another bundle, logged, on a logged release: another
// firmware (what an upgrade looks like), another name or limit, or any
// field changed and signed again. An identity revocation withdraws the
// keys, so every such bundle is refused, whether the client had pinned
// the vault or meets it for the first time.
func TestRevokedKeysRefusedUnderAnotherBundle(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		alter func(id *protocol.Identity)
	}{
		{"another firmware", func(id *protocol.Identity) { id.FirmwareHash = sum256("release 2") }},
		{"renamed, signed again", func(id *protocol.Identity) { id.Name = "a fresh vault" }},
		{"another limit", func(id *protocol.Identity) { id.MaxLimit-- }},
		{"only the HPKE key kept", func(id *protocol.Identity) {
			id.SigningKey, id.AKEKey = sum256("another signing key"), sum256("another AKE key")
		}},
		{"only the signing key kept", func(id *protocol.Identity) { id.AKEKey, id.HPKEKey = sum256("ake"), sum256("hpke") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fakehost.Options{})
			f.connect()
			revoked := hostBundle(t, f.host)
			idx := f.log.revoke(releaselog.KindIdentity, releaselog.BundleHash(revoked), "device stolen")
			f.refusedRevoked(ctx, idx, "the revoked bundle itself")

			id := *f.host.VaultIdentity()
			tc.alter(&id)
			si := serveIdentity(t, f.host, &id)
			f.log.release(f.log.l.Size()+1, "usbarmory", id.FirmwareHash)
			f.log.bundle(si)
			pinned := f.cfg.BundleHash
			f.opts.AcceptNewIdentity = func(*IdentityChange) error { return nil }
			f.refusedRevoked(ctx, idx, "the same keys in another bundle")
			if f.cfg.BundleHash != pinned {
				t.Fatal("the pin moved to a bundle with revoked keys")
			}

			// A device that never pinned the vault: refused at first contact.
			f.cfg.BundleHash, f.cfg.Vault = "", nil
			f.cfg.Log = nil
			f.log.pin(f.cfg)
			f.refusedRevoked(ctx, idx, "first contact")
			if f.cfg.BundleHash != "" {
				t.Fatal("a bundle with revoked keys was pinned")
			}
		})
	}
}

// refusedRevoked wants Connect refused as revoked by the entry at idx.
func (f *fixture) refusedRevoked(ctx context.Context, idx uint64, what string) {
	f.t.Helper()
	_, err := Connect(ctx, f.cfg, f.opts)
	if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), fmt.Sprintf("index %d", idx)) {
		f.t.Fatalf("%s: %v; want ErrRevoked naming index %d", what, err, idx)
	}
}

// Order does not matter: a revocation logged before the bundle it names
// (the hash unknown to the log when read) withdraws that bundle's keys
// once it appears, in the same update or a later one. A revocation whose
// bundle never appears refuses nothing else.
func TestIdentityRevocationBeforeItsBundle(t *testing.T) {
	ctx := context.Background()
	f := newUnloggedFixture(t, fakehost.Options{})
	si, id := hostBundle(t, f.host), *f.host.VaultIdentity()
	f.log.release(1, "usbarmory", id.FirmwareHash)
	ghost := f.log.revoke(releaselog.KindIdentity, sum256("a bundle never logged"), "never mind")
	idx := f.log.revoke(releaselog.KindIdentity, releaselog.BundleHash(si), "revoked in advance")
	// An unrelated vault, logged: the unresolved revocations do not touch it.
	other := *f.host.VaultIdentity()
	other.SigningKey, other.AKEKey, other.HPKEKey, other.Name = sum256("s"), sum256("a"), sum256("h"), "unrelated"
	f.log.bundle(serveIdentity(t, f.host, &other))
	if _, err := Connect(ctx, f.cfg, f.opts); errors.Is(err, ErrRevoked) || errors.Is(err, ErrNotLogged) {
		t.Fatalf("an unrelated vault: %v", err)
	}
	for _, r := range f.cfg.Log.Revoked {
		if r.Index == ghost && r.Keys != nil {
			t.Fatal("keys recorded for a bundle that is not in the log")
		}
	}
	// The revoked bundle and another one with its keys arrive after the
	// revocation, in the next update.
	f.log.bundle(si)
	id.Name = "renamed"
	alt := serveIdentity(t, f.host, &id)
	f.log.bundle(alt)
	f.cfg.BundleHash, f.cfg.Vault = "", nil
	f.refusedRevoked(ctx, idx, "another bundle with keys revoked before it was logged")
	f.host.SetIdentity(nil)
	f.refusedRevoked(ctx, idx, "the bundle revoked before it was logged")
}

// The keys of a revoked bundle are remembered with the log pin: a contact
// that reads no new entry (a host serving an older copy of the log), or a
// configuration saved and loaded again, still refuses another bundle with
// them. If the log cannot be read back to find the revoked bundle, its
// keys are unknown and every vault is refused until it can.
func TestRevokedKeysRemembered(t *testing.T) {
	ctx := context.Background()
	f, idx := newRevokedUpgradeFixture(t)

	// The revoked bundle is behind the view: found by reading the log
	// again from entry 0. A host that tampers with that read fails it.
	f.log.src.Tamper = tamperFromZero
	if _, err := Connect(ctx, f.cfg, f.opts); err == nil {
		t.Fatal("a vault accepted while an identity revocation could not be resolved to its keys")
	}
	// The view moved past the revocation; the next contact reads no new
	// entry, and must still look back.
	if _, err := Connect(ctx, f.cfg, f.opts); err == nil {
		t.Fatal("a vault accepted while an identity revocation could not be resolved to its keys (second contact)")
	}
	f.log.src.Tamper = nil
	f.refusedRevoked(ctx, idx, "the upgrade bundle, once the log reads back")

	path := filepath.Join(t.TempDir(), "config.json")
	if err := f.cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	f.opts.LogSource = &rollbackSource{Source: f.log.src, size: f.cfg.Log.View.Size - 1}
	f.refusedRevoked(ctx, idx, "behind an older copy of the log, after a reload")
}

// The log is read from every source of the run; so is the whole log read
// again to resolve an identity revocation to its keys. The adversary runs
// the vault's host: it serves the newest checkpoint, and tampers with the
// log when it is read from entry 0, so that the revoked bundle (behind the
// view) is never found and the vault's upgrade bundle, carrying its keys,
// passes. Through that host alone every vault is refused, --insecure or
// not; with a pinned log URL that serves the log, the keys are found
// there and the bundle is refused as revoked.
func TestRevokedKeysResolvedThroughAnotherSource(t *testing.T) {
	ctx := context.Background()
	f, idx := newRevokedUpgradeFixture(t)
	pinned := f.cfg.BundleHash
	f.opts.LogSource = &releaselogtest.Source{Log: f.log.l, Cosigners: 2, Tamper: tamperFromZero}

	opts := f.opts
	opts.AllowUnlogged = true
	for _, o := range []Options{f.opts, opts} {
		_, err := Connect(ctx, f.cfg, o)
		if err == nil || errors.Is(err, ErrNotLogged) || errors.Is(err, ErrStaleLog) {
			t.Fatalf("insecure=%v: the revocation unresolved: %v", o.AllowUnlogged, err)
		}
	}
	mirror := httptest.NewServer(f.log.src)
	defer mirror.Close()
	if _, err := f.cfg.PinLogURL(mirror.URL + "/"); err != nil {
		t.Fatal(err)
	}
	f.refusedRevoked(ctx, idx, "the upgrade bundle, its keys found through the pinned log URL")
	if f.cfg.BundleHash != pinned {
		t.Fatal("the pin moved to a bundle with revoked keys")
	}
}

// newRevokedUpgradeFixture is a vault pinned at its first bundle, whose
// host then serves an upgrade bundle with the same keys, logged with its
// release, after which the log revokes the first bundle (at idx): behind
// the view, its keys are found only by reading the log again from entry 0.
func newRevokedUpgradeFixture(t *testing.T) (f *fixture, idx uint64) {
	t.Helper()
	f = newFixture(t, fakehost.Options{})
	f.connect()
	revoked := hostBundle(t, f.host)
	id := *f.host.VaultIdentity()
	id.FirmwareHash = sum256("release 2")
	alt := serveIdentity(t, f.host, &id)
	f.log.release(2, "usbarmory", id.FirmwareHash)
	f.log.bundle(alt)
	return f, f.log.revoke(releaselog.KindIdentity, releaselog.BundleHash(revoked), "device stolen")
}

// tamperFromZero is a source's Tamper that corrupts the log read from its
// first entry, and only that read.
func tamperFromZero(from uint64, e [][]byte) [][]byte {
	if from == 0 {
		e[0] = e[1]
	}
	return e
}

// The identity entry must hold the served bundle exactly: the same body
// with another signature (another key's, or bytes that verify under
// nothing) is not the bundle the client was shown, and a monitor reading
// the log could not tell the provisioning key signed it.
func TestLoggedBundleMustMatchExactly(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sign func(f *fixture, si *protocol.SignedIdentity) *protocol.SignedIdentity
	}{
		{"signed by another key", func(f *fixture, _ *protocol.SignedIdentity) *protocol.SignedIdentity {
			_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
			var other protocol.SignedIdentity
			if err := protocol.Decode(f.host.SignIdentity(otherKey, f.host.VaultIdentity()), protocol.TypeIdentity, &other); err != nil {
				t.Fatal(err)
			}
			return &other
		}},
		{"a signature that verifies under nothing", func(_ *fixture, si *protocol.SignedIdentity) *protocol.SignedIdentity {
			return &protocol.SignedIdentity{Body: si.Body, Signature: make([]byte, ed25519.SignatureSize)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newUnloggedFixture(t, fakehost.Options{})
			si := hostBundle(t, f.host)
			f.log.release(1, "usbarmory", f.host.VaultIdentity().FirmwareHash)
			logged := tc.sign(f, si)
			if !bytes.Equal(logged.Body, si.Body) || bytes.Equal(logged.Signature, si.Signature) {
				t.Fatal("the test's bundle is not the served body with another signature")
			}
			at := f.log.bundle(logged)
			_, err := Connect(ctx, f.cfg, f.opts)
			if !errors.Is(err, ErrNotLogged) || !strings.Contains(err.Error(), fmt.Sprintf("index %d", at)) || !strings.Contains(err.Error(), "another signature") {
				t.Fatalf("the bundle logged with another signature: %v", err)
			}
			if f.cfg.BundleHash != "" {
				t.Fatal("pinned a bundle the log does not hold")
			}
			at = f.log.bundle(si)
			f.connect()
			if f.cfg.Vault.Logged.BundleIndex != at {
				t.Fatalf("found at %d, logged exactly at %d", f.cfg.Vault.Logged.BundleIndex, at)
			}
		})
	}
}
