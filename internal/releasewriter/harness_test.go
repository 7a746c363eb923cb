package releasewriter

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/internal/witness"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

const testOrigin = "release.test/coffer"

// testWitness is an in-process coffer witness (internal/witness) behind
// httptest, which a test can take down.
type testWitness struct {
	name string
	key  string // cosignature/v1 vkey
	srv  *httptest.Server
	down atomic.Bool
}

func startWitness(t testing.TB, name, logVkey string) *testWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.New(skey, t.TempDir(), map[string]string{testOrigin: logVkey})
	if err != nil {
		t.Fatal(err)
	}
	tw := &testWitness{name: name, key: cosig}
	tw.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if tw.down.Load() {
			http.Error(rw, "down for the test", http.StatusServiceUnavailable)
			return
		}
		w.ServeHTTP(rw, r)
	}))
	t.Cleanup(func() { tw.srv.Close(); w.Close() })
	return tw
}

// fixture is a release key, witnesses and the policy that pins them.
type fixture struct {
	signer    note.Signer
	witnesses []*testWitness
	policy    *releaselog.Policy
}

func newFixture(t testing.TB, witnesses, quorum int) *fixture {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{signer: s, policy: &releaselog.Policy{Origin: testOrigin, LogKey: vkey, Quorum: quorum}}
	for i := range witnesses {
		w := startWitness(t, fmt.Sprintf("witness-%d.test", i+1), vkey)
		f.witnesses = append(f.witnesses, w)
		f.policy.Witnesses = append(f.policy.Witnesses, w.key)
	}
	return f
}

func (f *fixture) config(dir string) Config {
	urls := map[string]string{}
	for _, w := range f.witnesses {
		urls[w.key] = w.srv.URL
	}
	return Config{Dir: dir, Signer: f.signer, Policy: f.policy, WitnessURLs: urls,
		CheckpointInterval: 100 * time.Millisecond, WitnessTimeout: 2 * time.Second, PublishTimeout: 3 * time.Second}
}

func (f *fixture) open(t testing.TB, dir string) *Log {
	t.Helper()
	l, err := Open(context.Background(), f.config(dir))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func release(version uint64) *releaselog.Entry {
	fw := make([]byte, 32)
	rand.Read(fw)
	return releaselogtest.Release(version, "usbarmory", fw)
}

func identity(t testing.TB, firmware []byte) *releaselog.Entry {
	_, prov, _ := ed25519.GenerateKey(rand.Reader)
	k := make([]byte, 32)
	rand.Read(k)
	si, err := protocol.SignIdentity(prov, &protocol.Identity{Version: protocol.Version, SigningKey: k, AKEKey: k, HPKEKey: k, FirmwareHash: firmware, MaxLimit: 10, Name: "vault"})
	if err != nil {
		t.Fatal(err)
	}
	return &releaselog.Entry{Kind: releaselog.KindIdentity, Identity: &si}
}
