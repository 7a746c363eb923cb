package host

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/filelock"
)

// realmReply is one answer of a realm storage endpoint.
type realmReply struct {
	status int
	header http.Header
	body   []byte
}

// realmDo sends one realm storage request. chunked hides the length, so
// that only the server's reading can bound the body.
func realmDo(t testing.TB, method, url, token string, body []byte, chunked bool) realmReply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if chunked {
		req.ContentLength = -1
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return realmReply{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantManifestHash is REALMS.md's manifest_hash, computed here from the
// document's definition rather than with the code under test.
func wantManifestHash(body []byte) string {
	sum := sha256.Sum256(append([]byte("coffer/v1 realm manifest\x00"), body...))
	return hex.EncodeToString(sum[:])
}

// putManifest PUTs a manifest and checks the hash cofferd answers.
func putManifest(t testing.TB, base, token string, body []byte) string {
	t.Helper()
	r := realmDo(t, http.MethodPut, base+"/v1/realms/manifest", token, body, false)
	var info ManifestHashInfo
	if r.status != 200 || json.Unmarshal(r.body, &info) != nil {
		t.Fatalf("PUT manifest: %d %s", r.status, r.body)
	}
	if info.ManifestHash != wantManifestHash(body) {
		t.Fatalf("PUT manifest answered hash %s, want %s", info.ManifestHash, wantManifestHash(body))
	}
	return info.ManifestHash
}

func putBlob(t testing.TB, base, token, hash string, body []byte) {
	t.Helper()
	r := realmDo(t, http.MethodPut, base+"/v1/realms/blob/"+hash, token, body, false)
	var info ManifestHashInfo
	if r.status != 200 || json.Unmarshal(r.body, &info) != nil || info.ManifestHash != hash {
		t.Fatalf("PUT blob: %d %s", r.status, r.body)
	}
}

// getRealm returns the status and body of a GET of a realm item.
func getRealm(t testing.TB, base, token, kind, hash string) (int, []byte) {
	t.Helper()
	r := realmDo(t, http.MethodGet, base+"/v1/realms/"+kind+"/"+hash, token, nil, false)
	return r.status, r.body
}

func testRealmStore(t testing.TB, dir string) *RealmStore {
	t.Helper()
	rs, err := OpenRealmStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return rs
}

func manifestBytes(tag string, n int) []byte {
	b := bytes.Repeat([]byte(tag), n/len(tag)+1)
	return b[:n]
}

// TestRealmStorageIsPerAccount plays another account: Mallory, who knows
// Alice's manifest hash (manifests are public), can neither read, replace
// nor delete Alice's manifest or blob; what she PUTs lands in her own
// storage.
func TestRealmStorageIsPerAccount(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice", "mallory")
	_, hs := testServer(t, Config{Devices: []Device{newStub("stub")}, Store: accounts, Realms: testRealmStore(t, t.TempDir())})
	alice, mallory := tokens["alice"], tokens["mallory"]

	manifest := manifestBytes("alice's manifest ", 700)
	blob := manifestBytes("alice's sealed resume blob ", 1200)
	h := putManifest(t, hs.URL, alice, manifest)
	putBlob(t, hs.URL, alice, h, blob)
	if st, b := getRealm(t, hs.URL, alice, "manifest", h); st != 200 || !bytes.Equal(b, manifest) {
		t.Fatalf("alice GET manifest: %d", st)
	}

	// Mallory cannot read them.
	for _, kind := range []string{"manifest", "blob"} {
		if st, b := getRealm(t, hs.URL, mallory, kind, h); st != 404 || bytes.Contains(b, []byte("alice's")) {
			t.Fatalf("mallory GET alice's %s: %d %q", kind, st, b)
		}
	}
	// Nor delete them.
	for _, kind := range []string{"manifest", "blob"} {
		if r := realmDo(t, http.MethodDelete, hs.URL+"/v1/realms/"+kind+"/"+h, mallory, nil, false); r.status != 404 {
			t.Fatalf("mallory DELETE alice's %s: %d %s", kind, r.status, r.body)
		}
	}
	// Nor overwrite the blob under the same hash: hers is her own.
	evil := manifestBytes("mallory's blob ", 1200)
	putBlob(t, hs.URL, mallory, h, evil)
	if st, b := getRealm(t, hs.URL, mallory, "blob", h); st != 200 || !bytes.Equal(b, evil) {
		t.Fatalf("mallory GET her own blob: %d", st)
	}
	// Nor evict Alice's by filling storage: she fills her own.
	for i := range RealmItemsKept + 2 {
		putManifest(t, hs.URL, mallory, manifestBytes("mallory "+string(rune('a'+i)), 100))
		putBlob(t, hs.URL, mallory, wantManifestHash([]byte{byte(i)}), evil)
	}

	if st, b := getRealm(t, hs.URL, alice, "manifest", h); st != 200 || !bytes.Equal(b, manifest) {
		t.Fatalf("alice's manifest after mallory: %d", st)
	}
	if st, b := getRealm(t, hs.URL, alice, "blob", h); st != 200 || !bytes.Equal(b, blob) {
		t.Fatalf("alice's blob after mallory: %d %q", st, b[:min(len(b), 20)])
	}
	if st, _ := getRealm(t, hs.URL, mallory, "blob", h); st != 404 {
		t.Fatalf("mallory's own blob under alice's hash was not evicted by her own PUTs: %d", st)
	}
	// Mallory deleting her own copy of the same manifest leaves Alice's.
	putManifest(t, hs.URL, mallory, manifest)
	if r := realmDo(t, http.MethodDelete, hs.URL+"/v1/realms/manifest/"+h, mallory, nil, false); r.status != 204 {
		t.Fatalf("mallory DELETE her own copy: %d %s", r.status, r.body)
	}
	if st, _ := getRealm(t, hs.URL, alice, "manifest", h); st != 200 {
		t.Fatalf("alice's manifest after mallory deleted her copy: %d", st)
	}
	// Alice can delete her own.
	for _, kind := range []string{"manifest", "blob"} {
		if r := realmDo(t, http.MethodDelete, hs.URL+"/v1/realms/"+kind+"/"+h, alice, nil, false); r.status != 204 {
			t.Fatalf("alice DELETE her %s: %d %s", kind, r.status, r.body)
		}
		if st, _ := getRealm(t, hs.URL, alice, kind, h); st != 404 {
			t.Fatalf("alice's %s after DELETE: %d", kind, st)
		}
	}
}

// TestRealmStorageEvictsTheOldestPut: four of each are kept; a fifth PUT
// evicts the oldest, and a re-PUT makes an item the newest again.
func TestRealmStorageEvictsTheOldestPut(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	_, hs := testServer(t, Config{Devices: []Device{newStub("stub")}, Store: accounts, Realms: testRealmStore(t, t.TempDir())})
	tok := tokens["alice"]
	var hashes []string
	for i := range 5 {
		hashes = append(hashes, putManifest(t, hs.URL, tok, manifestBytes("m"+string(rune('0'+i)), 64)))
		putBlob(t, hs.URL, tok, hashes[i], manifestBytes("b"+string(rune('0'+i)), 64))
	}
	held := func(want ...int) {
		t.Helper()
		for i, h := range hashes {
			for _, kind := range []string{"manifest", "blob"} {
				st, _ := getRealm(t, hs.URL, tok, kind, h)
				if wantSt := map[bool]int{true: 200, false: 404}[slices.Contains(want, i)]; st != wantSt {
					t.Errorf("%s %d: %d, want %d", kind, i, st, wantSt)
				}
			}
		}
	}
	held(1, 2, 3, 4)
	// Re-PUT the oldest held (1): now 2 is the oldest, and a new PUT
	// evicts it.
	putManifest(t, hs.URL, tok, manifestBytes("m1", 64))
	putBlob(t, hs.URL, tok, hashes[1], manifestBytes("b1", 64))
	hashes = append(hashes, putManifest(t, hs.URL, tok, manifestBytes("m5", 64)))
	putBlob(t, hs.URL, tok, hashes[5], manifestBytes("b5", 64))
	held(1, 3, 4, 5)
}

// TestRealmStorageRefusesBadRequests: oversize bodies, bad hashes, unknown
// hashes, wrong methods and no token each get their clear error, and
// nothing refused is stored.
func TestRealmStorageRefusesBadRequests(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	dir := t.TempDir()
	_, hs := testServer(t, Config{Devices: []Device{newStub("stub")}, Store: accounts, Realms: testRealmStore(t, dir)})
	tok := tokens["alice"]
	h := wantManifestHash([]byte("x"))
	cases := []struct {
		name, method, path string
		body               []byte
		chunked            bool
		ctype              string
		want               int
	}{
		{"manifest over 2 KiB", "PUT", "/v1/realms/manifest", make([]byte, MaxRealmManifestSize+1), false, "", 413},
		{"manifest over 2 KiB, chunked", "PUT", "/v1/realms/manifest", make([]byte, 3*MaxRealmManifestSize), true, "", 413},
		{"blob over 4 KiB", "PUT", "/v1/realms/blob/" + h, make([]byte, MaxRealmBlobSize+1), false, "", 413},
		{"blob over 4 KiB, chunked", "PUT", "/v1/realms/blob/" + h, make([]byte, MaxRealmBlobSize+1), true, "", 413},
		{"empty manifest", "PUT", "/v1/realms/manifest", []byte{}, false, "", 400},
		{"empty blob", "PUT", "/v1/realms/blob/" + h, []byte{}, false, "", 400},
		{"json body", "PUT", "/v1/realms/manifest", []byte("{}"), false, "application/json", 415},
		{"upper-case hash", "GET", "/v1/realms/manifest/" + strings.ToUpper(h), nil, false, "", 400},
		{"short hash", "GET", "/v1/realms/blob/" + h[:62], nil, false, "", 400},
		{"long hash", "PUT", "/v1/realms/blob/" + h + "00", []byte("b"), false, "", 400},
		{"not hex", "DELETE", "/v1/realms/manifest/" + strings.Repeat("g", 64), nil, false, "", 400},
		{"empty hash", "GET", "/v1/realms/manifest/", nil, false, "", 400},
		{"unknown manifest", "GET", "/v1/realms/manifest/" + h, nil, false, "", 404},
		{"unknown blob", "GET", "/v1/realms/blob/" + h, nil, false, "", 404},
		{"delete unknown", "DELETE", "/v1/realms/blob/" + h, nil, false, "", 404},
		{"blob without hash", "PUT", "/v1/realms/blob", []byte("b"), false, "", 404},
		{"other kind", "GET", "/v1/realms/secrets/" + h, nil, false, "", 404},
		{"PUT manifest by hash", "PUT", "/v1/realms/manifest/" + h, []byte("x"), false, "", 405},
		{"GET manifest list", "GET", "/v1/realms/manifest", nil, false, "", 405},
		{"POST blob", "POST", "/v1/realms/blob/" + h, []byte("b"), false, "", 405},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, hs.URL+c.path, bytes.NewReader(c.body))
		if c.chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(bytes.NewReader(c.body))
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb errorBody
		jerr := json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != c.want || jerr != nil || eb.Error == "" {
			t.Errorf("%s: %d %q (%v), want %d with a JSON error", c.name, resp.StatusCode, eb.Error, jerr, c.want)
		}
		if c.want == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", c.name)
		}
	}
	// Nothing refused was stored: the account has no file at all.
	if entries, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(entries) != 0 {
		t.Fatalf("refused requests left files: %v", entries)
	}
	// Exactly at the limits is accepted.
	hm := putManifest(t, hs.URL, tok, make([]byte, MaxRealmManifestSize))
	putBlob(t, hs.URL, tok, hm, make([]byte, MaxRealmBlobSize))
	// HEAD answers as GET, without the body.
	if r := realmDo(t, http.MethodHead, hs.URL+"/v1/realms/blob/"+hm, tok, nil, false); r.status != 200 ||
		r.header.Get("Content-Length") != "4096" || len(r.body) != 0 {
		t.Fatalf("HEAD blob: %d %q %d bytes", r.status, r.header.Get("Content-Length"), len(r.body))
	}
	// A bad hash on the manifest endpoint still names its methods.
	if r := realmDo(t, http.MethodPut, hs.URL+"/v1/realms/manifest/zz", tok, []byte("m"), false); r.status != 405 || strings.Contains(r.header.Get("Allow"), "PUT") {
		t.Fatalf("PUT manifest/zz: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	// Without a token: 401, before anything else is looked at.
	if r := realmDo(t, http.MethodGet, hs.URL+"/v1/realms/manifest/"+hm, "", nil, false); r.status != 401 {
		t.Fatalf("GET without token: %d", r.status)
	}
	if r := realmDo(t, http.MethodPut, hs.URL+"/v1/realms/manifest", "", []byte("m"), false); r.status != 401 {
		t.Fatalf("PUT without token: %d", r.status)
	}
}

// TestRealmStorageSurvivesRestart: what a cofferd stored is served by the
// next one on the same folder, and two cofferds never share a folder.
func TestRealmStorageSurvivesRestart(t *testing.T) {
	accounts, _, tokens := testAccounts(t, "alice")
	dir := t.TempDir()
	rs, err := OpenRealmStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRealmStore(dir); !errors.Is(err, filelock.ErrHeld) {
		t.Fatalf("a second store on the same folder: %v", err)
	}
	s1, err := New(Config{Devices: []Device{newStub("stub")}, Store: accounts, Realms: rs, Log: quiet, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	reportHealthy(t, s1)
	hs1 := httptest.NewServer(s1.Handler())
	manifest, blob := manifestBytes("kept ", 900), manifestBytes("blob ", 3000)
	h := putManifest(t, hs1.URL, tokens["alice"], manifest)
	putBlob(t, hs1.URL, tokens["alice"], h, blob)
	hs1.Close()
	s1.Close()
	rs.Close()

	_, hs2 := testServer(t, Config{Devices: []Device{newStub("stub")}, Store: accounts, Realms: testRealmStore(t, dir)})
	if st, b := getRealm(t, hs2.URL, tokens["alice"], "manifest", h); st != 200 || !bytes.Equal(b, manifest) {
		t.Fatalf("manifest after restart: %d", st)
	}
	if st, b := getRealm(t, hs2.URL, tokens["alice"], "blob", h); st != 200 || !bytes.Equal(b, blob) {
		t.Fatalf("blob after restart: %d", st)
	}
}

// TestRealmStorageKeepsADamagedFile: an account file that no longer decodes
// (edited, or damaged on disk) is an error, 500, and is never overwritten
// by a later PUT: nothing is lost that an operator could still recover.
func TestRealmStorageKeepsADamagedFile(t *testing.T) {
	accounts, accts, tokens := testAccounts(t, "alice")
	dir := t.TempDir()
	_, hs := testServer(t, Config{Devices: []Device{newStub("stub")}, Store: accounts, Realms: testRealmStore(t, dir)})
	tok := tokens["alice"]
	h := putManifest(t, hs.URL, tok, []byte("a manifest"))
	path := filepath.Join(dir, hex.EncodeToString(accts["alice"].UserID)+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Change the stored manifest's bytes: its hash no longer matches.
	damaged := bytes.Replace(b, []byte(`"body": "`), []byte(`"body": "AA`), 1)
	if bytes.Equal(damaged, b) {
		t.Fatal("test did not damage the file")
	}
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := getRealm(t, hs.URL, tok, "manifest", h); st != 500 {
		t.Fatalf("GET from a damaged file: %d", st)
	}
	if r := realmDo(t, http.MethodPut, hs.URL+"/v1/realms/manifest", tok, []byte("another"), false); r.status != 500 {
		t.Fatalf("PUT over a damaged file: %d", r.status)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
		t.Fatal("a damaged file was overwritten")
	}
}
