package client

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/realmtest"
	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// A realm in these tests is the real thing, in process: a vault
// (applet/vault, realm record kind) behind the real cofferd handlers
// (host.Server: relay of types 16-21, account checks, manifest storage),
// served over loopback HTTP. Each realm has its own provisioning key, so no
// two look like one operator. Its device can be taken down, and its host can
// be made to play the adversary on the evaluations it relays.

// testDevice is the vault as cofferd's device: it counts requests by type,
// can be disconnected, and can rewrite evaluation replies.
type testDevice struct {
	name string
	v    *vault.Vault

	mu     sync.Mutex
	down   bool
	counts map[protocol.Type]int
	// rewrite, if set, replaces the vault's reply to a request.
	rewrite func(t protocol.Type, request, reply []byte) []byte
	// drop, if set, says which requests the host drops before the vault
	// sees them.
	drop func(t protocol.Type) bool
}

func (d *testDevice) Name() string      { return d.name }
func (d *testDevice) Connected() bool   { d.mu.Lock(); defer d.mu.Unlock(); return !d.down }
func (d *testDevice) Close() error      { return nil }
func (d *testDevice) setDown(down bool) { d.mu.Lock(); d.down = down; d.mu.Unlock() }

func (d *testDevice) RoundTrip(ctx context.Context, request []byte) ([]byte, error) {
	t, err := protocol.PeekType(request)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	down, rewrite, v := d.down, d.rewrite, d.v
	if d.drop != nil && d.drop(t) {
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: dropped by the host", host.ErrDisconnected)
	}
	if !down {
		d.counts[t]++
	}
	d.mu.Unlock()
	if down {
		return nil, fmt.Errorf("%w: taken down by the test", host.ErrDisconnected)
	}
	reply := v.Handle(ctx, request)
	if rewrite != nil {
		reply = rewrite(t, request, reply)
	}
	return reply, nil
}

func (d *testDevice) count(t protocol.Type) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[t]
}

// testRealm is one realm: vault, device, cofferd and the account of the
// user there.
type testRealm struct {
	name   string
	store  *memstore.Store
	dev    *testDevice
	url    string
	token  string
	userID []byte

	provisioning ed25519.PublicKey
	// bundle is its identity bundle, as its provisioning key signed it.
	bundle *protocol.SignedIdentity
	// The vault's own keys, read from its store as a host that holds a
	// software realm's files can: what a compromised realm's operator has.
	signing ed25519.PrivateKey
	hpke    hpke.PrivateKey
}

type realmOptions struct {
	insecure bool
	maxLimit uint
}

func newTestRealm(t testing.TB, name string, o realmOptions) *testRealm {
	t.Helper()
	ctx := context.Background()
	if o.maxLimit == 0 {
		o.maxLimit = 10
	}
	st := memstore.New()
	fw := sha256.Sum256([]byte("firmware of " + name))
	v, err := vault.New(ctx, st, vault.Options{Create: true, Insecure: o.insecure, MaxLimit: o.maxLimit, Name: name,
		FirmwareHash: fw[:], Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	signed, err := protocol.SignIdentity(priv, v.Identity())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.InstallIdentity(ctx, signed); err != nil {
		t.Fatal(err)
	}
	r := &testRealm{name: name, store: st, provisioning: pub, bundle: &signed, dev: &testDevice{name: "dev-" + name, v: v, counts: map[protocol.Type]int{}}}
	r.readKeys(t)

	dir := t.TempDir()
	accounts := state.NewMemory()
	if err := accounts.RegisterDevice(ctx, r.dev.Name(), "local"); err != nil {
		t.Fatal(err)
	}
	acct, token, err := host.NewAccount(ctx, accounts, "user", r.dev.Name())
	if err != nil {
		t.Fatal(err)
	}
	realms, err := host.OpenRealmStore(filepath.Join(dir, "realms"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := host.New(host.Config{Devices: []host.Device{r.dev}, Store: accounts, Realms: realms, PollInterval: -1,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close(); realms.Close(); v.Close() })
	r.url, r.token, r.userID = hs.URL, token, acct.UserID
	return r
}

// readKeys reads the vault's signing and HPKE keys from its store (the
// identity record 'i', fields 1 and 3), as the operator of a software
// realm can read its files.
func (r *testRealm) readKeys(t testing.TB) {
	t.Helper()
	b, ok := r.store.Committed([]byte{'i'})
	if !ok {
		t.Fatal("no identity record in the vault's store")
	}
	var keys struct {
		Signing []byte `cbor:"1,keyasint"`
		HPKE    []byte `cbor:"3,keyasint"`
	}
	if err := cbor.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	r.signing = ed25519.NewKeyFromSeed(keys.Signing)
	var err error
	if r.hpke, err = protocol.HPKEKeyFromBytes(keys.HPKE); err != nil {
		t.Fatal(err)
	}
	if !r.signing.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(r.dev.v.Identity().SigningKey)) {
		t.Fatal("the identity record's layout changed: the signing key read is not the vault's")
	}
}

func (r *testRealm) entry() *RealmEntry {
	return &RealmEntry{Name: r.name, Server: r.url, Token: r.token, ProvisioningKey: hex.EncodeToString(r.provisioning), Operator: "operator of " + r.name}
}

// protocolRealm is the realm as realmtest drives it, for tests that play
// another client of the same account (the adversary, through the host).
func (r *testRealm) protocolRealm() *realmtest.Realm {
	return &realmtest.Realm{RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return r.dev.RoundTrip(ctx, req) },
		Identity: r.dev.v.Identity(), UserID: r.userID}
}

// realmFixture is a set of realms and the user's configuration of it.
type realmFixture struct {
	t      testing.TB
	realms []*testRealm
	cfg    *Config
	opts   RealmOptions
	// log is the release log the configuration pins, in which every
	// realm's vault is logged.
	log *devLog
}

func newRealmFixture(t testing.TB, threshold, n int, o realmOptions) *realmFixture {
	t.Helper()
	return newRealmFixtureUnlogged(t, threshold, n, o)
}

// newRealmFixtureUnlogged is newRealmFixture with the realms named
// unlogged left out of the log.
func newRealmFixtureUnlogged(t testing.TB, threshold, n int, o realmOptions, unlogged ...string) *realmFixture {
	t.Helper()
	f := &realmFixture{t: t, log: newDevLog(t)}
	rc := &RealmsConfig{Threshold: threshold}
	for i := range n {
		r := newTestRealm(t, string(rune('A'+i)), o)
		f.realms = append(f.realms, r)
		rc.Set = append(rc.Set, r.entry())
	}
	k := randomKey(t)
	rec, _ := k.AgeRecipient()
	f.cfg = &Config{Version: ConfigVersion, Mode: ModePassword, AgeRecipient: rec, Realms: rc, AllowInsecure: o.insecure}
	f.opts = RealmOptions{stretch: realmtest.FastStretch, EvidenceDir: t.TempDir(), LogSource: f.log.src}
	f.log.pin(f.cfg)
	for _, r := range f.realms {
		if !slices.Contains(unlogged, r.name) {
			f.logRealm(r)
		}
	}
	return f
}

// useLogOf makes g pin and read f's log: g is another device of the
// user's, of f's realms.
func (g *realmFixture) useLogOf(f *realmFixture) {
	g.log, g.opts.LogSource, g.cfg.Log = f.log, f.log.src, nil
	g.log.pin(g.cfg)
}

// logRealm logs a realm's release and bundle.
func (f *realmFixture) logRealm(r *testRealm) {
	f.log.vault(r.bundle, r.dev.v.Identity())
}

func (f *realmFixture) realmByName(name string) *testRealm {
	for _, r := range f.realms {
		if r.name == name {
			return r
		}
	}
	f.t.Fatalf("no realm %s", name)
	return nil
}

func (f *realmFixture) set() *RealmSet {
	f.t.Helper()
	s, err := OpenRealmSet(f.cfg, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *realmFixture) register(password string, limit uint) *BackupKey {
	f.t.Helper()
	k := randomKey(f.t)
	rep, err := f.set().Register(context.Background(), []byte(password), k, limit)
	if err != nil {
		f.t.Fatalf("register: %v", err)
	}
	if !rep.Committed {
		f.t.Fatalf("register did not commit: %s (%+v)", rep.Summary(), rep.Realms)
	}
	return k
}

func (f *realmFixture) recover(password string) (*Recovery, error) {
	f.t.Helper()
	return f.set().Recover(context.Background(), []byte(password))
}

// evaluations counts the evaluation requests each realm's vault received.
func (f *realmFixture) evaluations() []int {
	out := make([]int, len(f.realms))
	for i, r := range f.realms {
		out[i] = r.dev.count(protocol.TypeRealmEvaluate)
	}
	return out
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// lie makes realm r's host answer every evaluation with another share's
// evaluation and a valid proof for that other share, re-signed with the
// realm's own key and resealed to the client: a compromised realm. With
// identity set, it answers the identity element instead.
func (r *testRealm) lie(t *testing.T, identity bool) {
	other := []byte(nil)
	{
		k := make([]byte, 32)
		rand.Read(k[:31]) // below the group order: a canonical nonzero scalar
		other = k
	}
	r.dev.mu.Lock()
	defer r.dev.mu.Unlock()
	r.dev.rewrite = func(typ protocol.Type, request, reply []byte) []byte {
		if typ != protocol.TypeRealmEvaluate {
			return reply
		}
		var req protocol.RealmRequest
		if err := protocol.Decode(request, typ, &req); err != nil {
			return reply
		}
		var body protocol.RealmEvaluate
		_, secret, err := protocol.OpenRealmRequest(r.hpke, typ, &req, &body)
		if err != nil {
			return reply
		}
		var rr protocol.RealmReply
		if protocol.Decode(reply, typ, &rr) != nil {
			return reply
		}
		var inner protocol.RealmEvaluateReply
		if secret.OpenReply(&rr, &inner) != nil || len(inner.Evaluated) == 0 {
			return reply
		}
		rc, err := inner.Receipt.Verify(r.signing.Public().(ed25519.PublicKey))
		if err != nil {
			t.Errorf("lying host: %v", err)
			return reply
		}
		v := rc.Held(body.VersionID)
		e, proof, err := realmkey.EvaluateBlinded(other, body.Blinded)
		if err != nil {
			t.Errorf("lying host: %v", err)
			return reply
		}
		if identity {
			e = make([]byte, 32)
		}
		inner.Evaluated, inner.Proof = e, proof
		rc.EvaluationHash = protocol.EvaluationHash(v.ManifestHash, v.Index, body.Blinded, e, proof, inner.Handle)
		if inner.Receipt, err = protocol.SignRealmReceipt(r.signing, rc); err != nil {
			t.Errorf("lying host: %v", err)
			return reply
		}
		sealed, err := secret.SealReply(rand.Reader, &inner)
		if err != nil {
			t.Errorf("lying host: %v", err)
			return reply
		}
		out, _ := protocol.Encode(typ, sealed)
		return out
	}
}

// rollBack restores the realm's store to a snapshot and reboots its vault:
// a host that keeps old copies of a software realm's files.
func (r *testRealm) rollBack(t *testing.T, restore func()) {
	t.Helper()
	restore()
	r.dev.mu.Lock()
	defer r.dev.mu.Unlock()
	id := r.dev.v.Identity()
	r.dev.v.Close()
	v, err := vault.New(context.Background(), r.store, vault.Options{MaxLimit: id.MaxLimit, Insecure: id.Insecure, Name: id.Name,
		FirmwareHash: id.FirmwareHash, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.dev.v = v
}
