package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/internal/provision"
	"github.com/cofferhsm/coffer/internal/witness"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

const origin = "release.test/coffer"

type operator struct {
	t        *testing.T
	dir      string
	key      string
	logDir   string
	witness  []string // -witness flag values
	down     []*atomic.Bool
	names    []string
	policy   *releaselog.Policy
	polFile  string
	provPub  string
	provPriv ed25519.PrivateKey
}

func (o *operator) run(args ...string) (string, error) {
	var out strings.Builder
	err := run(context.Background(), args, &out, io.Discard)
	return out.String(), err
}

func (o *operator) must(args ...string) string {
	o.t.Helper()
	out, err := o.run(args...)
	if err != nil {
		o.t.Fatalf("coffer-release %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (o *operator) logArgs(cmd string, extra ...string) []string {
	a := []string{cmd, "-log", o.logDir, "-key", o.key, "-quorum", "2", "-interval", "100ms", "-timeout", "2s"}
	for _, w := range o.witness {
		a = append(a, "-witness", w)
	}
	return append(a, extra...)
}

func newOperator(t *testing.T) *operator {
	dir := t.TempDir()
	o := &operator{t: t, dir: dir, key: filepath.Join(dir, "release.key"), logDir: filepath.Join(dir, "log")}
	out := o.must("keygen", "-origin", origin, "-o", o.key)
	vkey := strings.TrimSpace(strings.TrimPrefix(out, "release key: "))
	if _, err := note.NewVerifier(vkey); err != nil {
		t.Fatalf("keygen printed %q", out)
	}
	if _, err := o.run("keygen", "-origin", origin, "-o", o.key); err == nil {
		t.Fatal("keygen overwrote the release key")
	}
	for i := range 2 {
		name := fmt.Sprintf("witness-%d.test", i+1)
		skey, wv, _ := note.GenerateKey(rand.Reader, name)
		cosig, _ := fnote.VKeyToCosignatureV1(wv)
		w, err := witness.New(skey, t.TempDir(), map[string]string{origin: vkey})
		if err != nil {
			t.Fatal(err)
		}
		down := new(atomic.Bool)
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(rw, "down", http.StatusServiceUnavailable)
				return
			}
			w.ServeHTTP(rw, r)
		}))
		t.Cleanup(func() { srv.Close(); w.Close() })
		o.witness = append(o.witness, cosig+"="+srv.URL)
		o.down = append(o.down, down)
		o.names = append(o.names, name)
	}
	args := []string{"policy", "-key", o.key, "-quorum", "2"}
	for _, w := range o.witness {
		args = append(args, "-witness", w)
	}
	text := o.must(args...)
	p, err := releaselog.ParsePolicy([]byte(text))
	if err != nil || p.LogKey != vkey || p.Quorum != 2 || len(p.Witnesses) != 2 {
		t.Fatalf("policy printed %q: %v", text, err)
	}
	o.policy = p
	o.polFile = filepath.Join(dir, "policy.txt")
	os.WriteFile(o.polFile, []byte(text), 0o644)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	o.provPub, o.provPriv = hex.EncodeToString(pub), priv
	return o
}

// image writes a fake image and returns its path and SHA-256.
func (o *operator) image(name string) (string, []byte) {
	p := filepath.Join(o.dir, name)
	b := make([]byte, 1000)
	rand.Read(b)
	os.WriteFile(p, b, 0o644)
	sum := sha256.Sum256(b)
	return p, sum[:]
}

func (o *operator) bundle(name string, firmware []byte, insecure bool, key ed25519.PrivateKey) string {
	k := make([]byte, 32)
	rand.Read(k)
	return o.signed(name, key, &protocol.Identity{Version: protocol.Version, SigningKey: k, AKEKey: k, HPKEKey: k, FirmwareHash: firmware, MaxLimit: 10, Insecure: insecure, Name: name})
}

// checkpoint reads the published checkpoint and verifies it with the policy.
func (o *operator) checkpoint() *releaselog.Checkpoint {
	o.t.Helper()
	raw, err := os.ReadFile(filepath.Join(o.logDir, "checkpoint"))
	if err != nil {
		o.t.Fatal(err)
	}
	cp, err := o.policy.VerifyCheckpoint(raw)
	if err != nil {
		o.t.Fatalf("the published checkpoint does not verify: %v", err)
	}
	return cp
}

func (o *operator) refused(what, wantInErr string, args ...string) {
	o.t.Helper()
	before := o.checkpoint().Size
	out, err := o.run(args...)
	if err == nil || !strings.Contains(err.Error(), wantInErr) {
		o.t.Fatalf("%s: %v (output %q); want an error saying %q", what, err, out, wantInErr)
	}
	if after := o.checkpoint().Size; after != before {
		o.t.Fatalf("%s: refused, but the log grew from %d to %d", what, before, after)
	}
}

func TestOperatorPublishesReleasesAndIdentities(t *testing.T) {
	o := newOperator(t)
	osELF, fw := o.image("os.elf")
	applet, _ := o.image("applet.elf")
	imx, _ := o.image("boot.imx")
	rel := []string{"-version", "3", "-name", "v0.3.0", "-commit", "abc123", "-toolchain", "tamago-go1.26.0", "-board", "usbarmory", "-os", osELF, "-applet", applet, "-boot-image", imx}
	out := o.must(o.logArgs("add-release", rel...)...)
	if !strings.Contains(out, "logged release v0.3.0") || !strings.Contains(out, hex.EncodeToString(fw)) {
		t.Fatalf("add-release said %q", out)
	}
	if cp := o.checkpoint(); cp.Size != 1 {
		t.Fatalf("checkpoint size %d after one release", cp.Size)
	}
	o.refused("a release whose version is not above", "not above 3", o.logArgs("add-release", append(rel[2:], "-version", "3", "-name", "v0.3.0-again")...)...)
	os2, _ := o.image("os2.elf")
	o.refused("an older release with new images", "not above 3", o.logArgs("add-release", "-version", "2", "-name", "v0.2.9", "-commit", "c", "-toolchain", "t", "-board", "usbarmory", "-os", os2, "-applet", applet)...)

	// Identities.
	good := o.bundle("vault-1", fw, false, o.provPriv)
	out = o.must(o.logArgs("add-identity", "-bundle", good, "-provisioning-key", o.provPub)...)
	if !strings.Contains(out, "verified: signed by provisioning key") || !strings.Contains(out, "logged and not revoked") {
		t.Fatalf("add-identity said %q", out)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	o.refused("a bundle signed by another provisioning key", "not signed by provisioning key",
		o.logArgs("add-identity", "-bundle", o.bundle("rogue", fw, false, otherKey), "-provisioning-key", o.provPub)...)
	_, unlogged := o.image("unlogged.elf")
	o.refused("a bundle for unlogged firmware", "not a logged release",
		o.logArgs("add-identity", "-bundle", o.bundle("unlogged", unlogged, false, o.provPriv), "-provisioning-key", o.provPub)...)
	swOS, swFW := o.image("softvault")
	o.must(o.logArgs("add-release", "-version", "1", "-name", "soft-1", "-commit", "c", "-toolchain", "go1.26", "-board", "software", "-os", swOS, "-applet", swOS)...)
	o.refused("a software vault claiming to be secure", "software vault as secure",
		o.logArgs("add-identity", "-bundle", o.bundle("soft-secure", swFW, false, o.provPriv), "-provisioning-key", o.provPub)...)
	o.must(o.logArgs("add-identity", "-bundle", o.bundle("soft", swFW, true, o.provPriv), "-provisioning-key", o.provPub)...)

	// The proof bundle the bootloader needs.
	proofFile := filepath.Join(o.dir, "os.proof")
	out = o.must("proof", "-log", o.logDir, "-policy", o.polFile, "-firmware", hex.EncodeToString(fw), "-o", proofFile)
	b, _ := os.ReadFile(proofFile)
	pr, err := releaselog.ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	e, cp, err := o.policy.VerifyProof(pr)
	if err != nil || e.Kind != releaselog.KindRelease || hex.EncodeToString(e.Release.Firmware) != hex.EncodeToString(fw) || e.Release.Version != 3 {
		t.Fatalf("the proof bundle (%q) does not prove the release: %v", out, err)
	}
	if len(cp.Witnessed) < 2 {
		t.Fatalf("proof checkpoint cosigned by %q", cp.Witnessed)
	}
	o.refused("a proof of unlogged firmware", "no release", "proof", "-log", o.logDir, "-policy", o.polFile, "-firmware", hex.EncodeToString(unlogged), "-o", proofFile)

	out = o.must("list", "-log", o.logDir, "-policy", o.polFile)
	if strings.Count(out, "\n") != 5 || !strings.Contains(out, "0: release v0.3.0") || !strings.Contains(out, "3: identity bundle") {
		t.Fatalf("list printed %q", out)
	}

	// Revocation: no more proofs, no more identities on that release.
	o.refused("revoking what is not logged", "no logged release", o.logArgs("revoke", "-release", hex.EncodeToString(unlogged), "-reason", "x")...)
	o.must(o.logArgs("revoke", "-release", hex.EncodeToString(fw), "-reason", "key extraction bug")...)
	o.refused("a proof of a revoked release", "revoked", "proof", "-log", o.logDir, "-policy", o.polFile, "-firmware", hex.EncodeToString(fw), "-o", proofFile)
	o.refused("an identity on a revoked release", "revoked",
		o.logArgs("add-identity", "-bundle", o.bundle("vault-2", fw, false, o.provPriv), "-provisioning-key", o.provPub)...)
}

func TestOperatorWithAWitnessDown(t *testing.T) {
	o := newOperator(t)
	osELF, _ := o.image("os.elf")
	o.must(o.logArgs("add-release", "-version", "1", "-name", "v1", "-commit", "c", "-toolchain", "t", "-board", "qemu", "-os", osELF, "-applet", osELF)...)
	os2, _ := o.image("os2.elf")
	v2 := o.logArgs("add-release", "-version", "2", "-name", "v2", "-commit", "c", "-toolchain", "t", "-board", "qemu", "-os", os2, "-applet", os2)
	o.down[1].Store(true)
	_, err := o.run(v2...)
	if err == nil || !strings.Contains(err.Error(), o.names[1]) || strings.Contains(err.Error(), o.names[0]+" (") {
		t.Fatalf("add-release with %s down: %v; want an error naming it (only)", o.names[1], err)
	}
	if cp := o.checkpoint(); cp.Size != 1 {
		t.Fatalf("a checkpoint of size %d was published without the quorum", cp.Size)
	}
	o.down[1].Store(false)
	out := o.must(v2...)
	if !strings.Contains(out, "already in the log") || !strings.Contains(out, "at index 1") {
		t.Fatalf("the retry said %q", out)
	}
	if cp := o.checkpoint(); cp.Size != 2 {
		t.Fatalf("checkpoint size %d after the retry, want 2", cp.Size)
	}
}

// A quiet log: `refresh` has the unchanged checkpoint cosigned again, so
// that clients whose policy has a max-age keep accepting it; the policy
// command prints the max-age; with a witness down (quorum 2 of 2) refresh
// fails naming it and publishes nothing.
func TestOperatorRefreshesAQuietLog(t *testing.T) {
	o := newOperator(t)
	args := []string{"policy", "-key", o.key, "-quorum", "2", "-max-age", "168h"}
	for _, w := range o.witness {
		args = append(args, "-witness", w)
	}
	p, err := releaselog.ParsePolicy([]byte(o.must(args...)))
	if err != nil || p.MaxAge != 168*time.Hour {
		t.Fatalf("policy -max-age 168h: %v %v", err, p)
	}
	if _, err := o.run(append(args[:len(args):len(args)], "-max-age", "30s")...); err == nil {
		t.Fatal("a max-age of 30s was printed")
	}
	osELF, _ := o.image("os.elf")
	o.must(o.logArgs("add-release", "-version", "1", "-name", "v1", "-commit", "c", "-toolchain", "t", "-board", "qemu", "-os", osELF, "-applet", osELF)...)
	before := o.checkpoint()
	at, _ := before.WitnessedAt(2, time.Now())
	for time.Now().Unix() <= at.Unix() {
		time.Sleep(50 * time.Millisecond)
	}
	out := o.must(o.logArgs("refresh")...)
	after := o.checkpoint()
	again, _ := after.WitnessedAt(2, time.Now())
	if !strings.Contains(out, "cosigned again by") || after.Size != before.Size || !again.After(at) {
		t.Fatalf("refresh said %q; checkpoint of %d cosigned at %v, was %d at %v", out, after.Size, again, before.Size, at)
	}
	if _, err := p.VerifyCheckpointAt([]byte(after.Raw), time.Now().Add(167*time.Hour)); err != nil {
		t.Fatalf("a week on, the refreshed checkpoint: %v", err)
	}
	o.down[0].Store(true)
	for time.Now().Unix() <= again.Unix() {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := o.run(o.logArgs("refresh")...); err == nil || !strings.Contains(err.Error(), o.names[0]) {
		t.Fatalf("refresh with %s down: %v", o.names[0], err)
	}
	if got, _ := o.checkpoint().WitnessedAt(2, time.Now()); !got.Equal(again) {
		t.Fatalf("a checkpoint without its quorum was published (cosigned at %v, was %v)", got, again)
	}
}

// An identity revocation withdraws the vault's keys: the operator (or
// whoever feeds it bundles) cannot log them again in another bundle, on
// another release, under another name, or sharing only one key.
func TestAddIdentityRefusesRevokedKeys(t *testing.T) {
	o := newOperator(t)
	osELF, fw := o.image("os.elf")
	o.must(o.logArgs("add-release", "-version", "1", "-name", "v1", "-commit", "c", "-toolchain", "t", "-board", "usbarmory", "-os", osELF, "-applet", osELF)...)
	os2, fw2 := o.image("os2.elf")
	o.must(o.logArgs("add-release", "-version", "2", "-name", "v2", "-commit", "c", "-toolchain", "t", "-board", "usbarmory", "-os", os2, "-applet", os2)...)
	id := protocol.Identity{Version: protocol.Version, SigningKey: sum("signing"), AKEKey: sum("ake"), HPKEKey: sum("hpke"), FirmwareHash: fw, MaxLimit: 10, Name: "stolen"}
	stolen := o.signed("stolen", o.provPriv, &id)
	o.must(o.logArgs("add-identity", "-bundle", stolen, "-provisioning-key", o.provPub)...)
	si := readBundle(t, stolen)
	o.must(o.logArgs("revoke", "-identity", hex.EncodeToString(releaselog.BundleHash(si)), "-reason", "device stolen")...)

	for _, tc := range []struct {
		name  string
		alter func(*protocol.Identity)
	}{
		{"upgrade", func(id *protocol.Identity) { id.FirmwareHash = fw2 }},
		{"renamed", func(id *protocol.Identity) { id.Name = "fresh" }},
		{"only the AKE key", func(id *protocol.Identity) { id.SigningKey, id.HPKEKey = sum("s2"), sum("h2") }},
	} {
		again := id
		tc.alter(&again)
		o.refused(tc.name, "revoked", o.logArgs("add-identity", "-bundle", o.signed(tc.name, o.provPriv, &again), "-provisioning-key", o.provPub)...)
	}
	fresh := id
	fresh.SigningKey, fresh.AKEKey, fresh.HPKEKey, fresh.Name = sum("s3"), sum("a3"), sum("h3"), "new device"
	o.must(o.logArgs("add-identity", "-bundle", o.signed("new", o.provPriv, &fresh), "-provisioning-key", o.provPub)...)
}

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// signed writes id, signed by key, to a bundle file.
func (o *operator) signed(name string, key ed25519.PrivateKey, id *protocol.Identity) string {
	o.t.Helper()
	si, err := protocol.SignIdentity(key, id)
	if err != nil {
		o.t.Fatal(err)
	}
	p := filepath.Join(o.dir, name+".bundle")
	if err := provision.WriteCBOR(p, &si); err != nil {
		o.t.Fatal(err)
	}
	return p
}

func readBundle(t *testing.T, path string) *protocol.SignedIdentity {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var si protocol.SignedIdentity
	if err := protocol.Unmarshal(b, &si); err != nil {
		t.Fatal(err)
	}
	return &si
}
