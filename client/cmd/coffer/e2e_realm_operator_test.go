package main

// What the operator of a software realm has and can do, for the end-to-end
// adversary tests (protocol/REALMS.md 12.4): the vault's state folder is
// files on the operator's machine, so the vault's signing and HPKE keys can
// be read from a copy of it, the folder can be put back to an older copy,
// and every byte between coffer and cofferd passes through the operator's
// hands (realmHop).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/cofferhsm/coffer/applet/softvault"
	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
	"github.com/cofferhsm/coffer/protocol"
)

// The files of a softvault state folder that hold the vault (see the
// layout in applet/softvault/state.go): the device key that seals the
// store, the store's block device and the emulated RPMB anchor.
var softvaultStateFiles = []string{"device.key", softvault.StoreFile, "anchor.rpmb"}

// operatorKeys are a realm vault's own private keys, as its operator reads
// them from the state folder.
type operatorKeys struct {
	signing ed25519.PrivateKey
	hpke    hpke.PrivateKey
}

// readOperatorKeys copies realm r's state folder, as its operator can at any
// time, and opens the copy with the product's own store code (the device
// key, the anchor authenticated with the key derived from it, the record
// store): the vault's identity record holds the signing seed (field 1) and
// the HPKE seed (field 3). The keys read must be the ones the realm's
// identity bundle, verified under its provisioning key, publishes.
func readOperatorKeys(t *testing.T, r *e2eRealm) *operatorKeys {
	t.Helper()
	dir := t.TempDir()
	copyState(t, r.vault.state, dir)
	b, err := os.ReadFile(filepath.Join(dir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	var key [32]byte
	if err != nil || len(raw) != len(key) {
		t.Fatalf("device.key of %s: %v", r.name, err)
	}
	copy(key[:], raw)
	dev, err := emulate.OpenFileDevice(filepath.Join(dir, softvault.StoreFile), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	anc, err := emulate.OpenFileAnchor(filepath.Join(dir, "anchor.rpmb"), storage.DeriveRPMBKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	st, err := store.Open(dev, anc, store.Options{SealingKey: key})
	if err != nil {
		t.Fatalf("opening the copy of %s's store: %v", r.name, err)
	}
	defer st.Close()
	rec, found, err := st.Get([]byte{'i'})
	if err != nil || !found {
		t.Fatalf("%s's store has no identity record (%v)", r.name, err)
	}
	var seeds struct {
		Signing []byte `cbor:"1,keyasint"`
		HPKE    []byte `cbor:"3,keyasint"`
	}
	if err := cbor.Unmarshal(rec, &seeds); err != nil {
		t.Fatal(err)
	}
	k := &operatorKeys{signing: ed25519.NewKeyFromSeed(seeds.Signing)}
	if k.hpke, err = protocol.HPKEKeyFromBytes(seeds.HPKE); err != nil {
		t.Fatal(err)
	}

	conn, err := client.NewConn(r.daemon.url(), r.token, nil)
	if err != nil {
		t.Fatal(err)
	}
	si, err := conn.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	prov, _ := hex.DecodeString(r.provKey)
	id, err := si.Verify(ed25519.PublicKey(prov))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.signing.Public().(ed25519.PublicKey), id.SigningKey) || !bytes.Equal(k.hpke.PublicKey().Bytes(), id.HPKEKey) {
		t.Fatalf("the keys read from %s's state folder are not the ones its identity publishes: the identity record's layout changed", r.name)
	}
	return k
}

// copyState copies the vault's files from the state folder src to dst,
// keeping the store image sparse (it is 256 MiB, almost all holes).
func copyState(t *testing.T, src, dst string) {
	t.Helper()
	for _, name := range softvaultStateFiles {
		if err := copySparse(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, len(zeroChunk))
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				out.Close()
				return err
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(fi.Size()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var zeroChunk [64 << 10]byte

func allZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }

// realmHop is the coffer ⇄ cofferd hop of one realm in the operator's
// hands: an HTTP server the user is given as the realm's address, which
// forwards every request to cofferd and passes the reply back, after
// rewrite (if set) has seen each envelope request to /v1/vault and the
// reply cofferd gave.
type realmHop struct {
	target string
	srv    *httptest.Server

	mu      sync.Mutex
	rewrite func(typ protocol.Type, request, reply []byte) []byte
}

func startRealmHop(t *testing.T, target string) *realmHop {
	t.Helper()
	h := &realmHop{target: target}
	h.srv = httptest.NewServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *realmHop) url() string { return h.srv.URL }

// set installs a rewrite (nil: pass everything through).
func (h *realmHop) set(rewrite func(typ protocol.Type, request, reply []byte) []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rewrite = rewrite
}

func (h *realmHop) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	var rd io.Reader
	if req.Method != http.MethodGet {
		rd = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, h.target+req.URL.RequestURI(), rd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = req.Header.Clone()
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h.mu.Lock()
	rewrite := h.rewrite
	h.mu.Unlock()
	if rewrite != nil && req.Method == http.MethodPost && req.URL.Path == "/v1/vault" && resp.StatusCode == http.StatusOK {
		if typ, err := protocol.PeekType(body); err == nil {
			reply = rewrite(typ, body, reply)
		}
	}
	for _, k := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(reply)
}
