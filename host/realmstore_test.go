package host

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestRealmStoreBoundsEachAccount: however an account PUTs, its file holds
// at most four of each kind at their size limits, and stays under the size
// the decoder reads back (about half of it).
func TestRealmStoreBoundsEachAccount(t *testing.T) {
	rs := testRealmStore(t, t.TempDir())
	uid := []byte("0123456789abcdef")
	for i := range 3 * RealmItemsKept {
		m := bytes.Repeat([]byte{byte(i)}, MaxRealmManifestSize)
		h, err := rs.PutManifest(uid, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.PutBlob(uid, h, bytes.Repeat([]byte{byte(i)}, MaxRealmBlobSize)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := rs.read(uid)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Manifests) != RealmItemsKept || len(f.Blobs) != RealmItemsKept {
		t.Fatalf("%d manifests, %d blobs kept", len(f.Manifests), len(f.Blobs))
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	if len(b) > maxRealmFileSize {
		t.Fatalf("a full account file is %d bytes, more than the %d read back", len(b), maxRealmFileSize)
	}
	if _, err := rs.PutManifest(uid, make([]byte, MaxRealmManifestSize+1)); !errors.Is(err, ErrRealmTooLarge) {
		t.Fatalf("oversize manifest: %v", err)
	}
	if err := rs.PutBlob(uid, [ManifestHashSize]byte{}, nil); !errors.Is(err, ErrRealmEmpty) {
		t.Fatalf("empty blob: %v", err)
	}
}

func realmFileSeeds(t testing.TB) [][]byte {
	m := []byte("a manifest")
	h := manifestHash(m)
	valid, err := json.Marshal(&realmFile{Version: 1,
		Manifests: []realmItem{{Hash: h[:], Body: m}},
		Blobs:     []realmItem{{Hash: h[:], Body: []byte("sealed")}}})
	if err != nil {
		t.Fatal(err)
	}
	hx := hex.EncodeToString(h[:])
	item := `{"hash":"` + hx + `","body":"YQ=="}`
	return [][]byte{
		valid,
		[]byte(`{"version":1}`),
		[]byte(`{"version":1,"manifests":null,"blobs":[]}`),
		[]byte(`{"version":2}`),
		[]byte(`{"version":1,"extra":1}`),
		[]byte(`{"version":1} {}`),
		[]byte(`{"version":1,"blobs":[` + item + `,` + item + `]}`),                            // the same hash twice
		[]byte(`{"version":1,"manifests":[` + item + `]}`),                                     // a manifest not matching its hash
		[]byte(`{"version":1,"blobs":[{"hash":"00","body":"YQ=="}]}`),                          // short hash
		[]byte(`{"version":1,"blobs":[{"hash":"` + hx + `","body":""}]}`),                      // empty body
		[]byte(`{"version":1,"blobs":[` + strings.Repeat(item+",", 4) + item + `]}`),           // five
		[]byte(`{"version":1,"blobs":[{"hash":"` + strings.ToUpper(hx) + `","body":"YQ=="}]}`), // upper-case hex
		[]byte(`{"Version":1,"BLOBS":[{"Hash":"` + hx + `","Body":"YQ=="}]}`),                  // other cases of the names
		[]byte(`{"version":1,"blobs":[{"hash":"` + hx + `","body":"YQ==","body":"Yg=="}]}`),    // a key twice
		{}, []byte("null"), []byte("[]"), []byte(`{"version":1,"blobs":{}}`), []byte("\xff"),
	}
}

// FuzzRealmFile: the decoder of an account's file never panics and
// accepts only files within every bound: at most four of each kind, sizes
// within the limits, 32-byte hashes, none twice, every manifest matching
// its hash; and what it accepts encodes back to a file it decodes the same.
func FuzzRealmFile(f *testing.F) {
	for _, s := range realmFileSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rf, err := decodeRealmFile(b)
		if err != nil {
			return
		}
		if rf.Version != realmFileVersion {
			t.Fatalf("accepted version %d", rf.Version)
		}
		for _, k := range []RealmKind{RealmManifest, RealmBlob} {
			items := *rf.items(k)
			if len(items) > RealmItemsKept {
				t.Fatalf("accepted %d %ss", len(items), k)
			}
			seen := map[string]bool{}
			for _, it := range items {
				if len(it.Hash) != ManifestHashSize || len(it.Body) == 0 || len(it.Body) > k.MaxSize() || seen[string(it.Hash)] {
					t.Fatalf("accepted %s hash %x body of %d bytes", k, []byte(it.Hash), len(it.Body))
				}
				seen[string(it.Hash)] = true
				if h := manifestHash(it.Body); k == RealmManifest && !bytes.Equal(h[:], it.Hash) {
					t.Fatal("accepted a manifest that does not match its hash")
				}
			}
		}
		again, err := json.Marshal(rf)
		if err != nil {
			t.Fatal(err)
		}
		rf2, err := decodeRealmFile(again)
		if err != nil || !reflect.DeepEqual(rf, rf2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func realmPathSeeds() []string {
	h := strings.Repeat("0123456789abcdef", 4)
	return []string{
		"/v1/realms/manifest", "/v1/realms/manifest/" + h, "/v1/realms/blob/" + h,
		"/v1/realms/blob", "/v1/realms/blob/", "/v1/realms/manifest/", "/v1/realms/",
		"/v1/realms/manifest/" + strings.ToUpper(h), "/v1/realms/blob/" + h + "/",
		"/v1/realms/blob/" + h[:63] + "g", "/v1/realms/blob/" + h + h, "/v1/realms/manifests",
		"/v1/realms/blob/../manifest", "/v1/account", "", "/",
	}
}

func TestParseRealmPath(t *testing.T) {
	h := strings.Repeat("0123456789abcdef", 4)
	for _, c := range []struct {
		path    string
		kind    RealmKind
		hasHash bool
		err     error
	}{
		{"/v1/realms/manifest", RealmManifest, false, nil},
		{"/v1/realms/manifest/" + h, RealmManifest, true, nil},
		{"/v1/realms/blob/" + h, RealmBlob, true, nil},
		{"/v1/realms/blob", 0, false, errRealmNoEndpoint},
		{"/v1/realms/other/" + h, 0, false, errRealmNoEndpoint},
		{"/v1/realm/manifest", 0, false, errRealmNoEndpoint},
		{"/v1/realms/blob/" + h + "/", 0, false, errRealmBadHash},
		{"/v1/realms/blob/" + strings.ToUpper(h), 0, false, errRealmBadHash},
		{"/v1/realms/manifest/" + h[:63] + "z", 0, false, errRealmBadHash},
	} {
		rp, err := parseRealmPath(c.path)
		if !errors.Is(err, c.err) || (err == nil && (rp.kind != c.kind || rp.hasHash != c.hasHash)) {
			t.Errorf("%q: %+v %v", c.path, rp, err)
		}
		if err == nil && c.hasHash && hex.EncodeToString(rp.hash[:]) != h {
			t.Errorf("%q: hash %x", c.path, rp.hash)
		}
	}
}

// FuzzRealmPath: the URL parser never panics, fails only with its two
// errors, and accepts exactly the canonical spellings: a path it accepts is
// the one cofferd would write for what it parsed.
func FuzzRealmPath(f *testing.F) {
	for _, s := range realmPathSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rp, err := parseRealmPath(p)
		if err != nil {
			if !errors.Is(err, errRealmNoEndpoint) && !errors.Is(err, errRealmBadHash) {
				t.Fatalf("%q: unexpected error %v", p, err)
			}
			return
		}
		want := realmsPrefix + rp.kind.String()
		if rp.hasHash {
			want += "/" + hex.EncodeToString(rp.hash[:])
		} else if rp.kind != RealmManifest {
			t.Fatalf("%q: a %s without a hash", p, rp.kind)
		}
		if p != want {
			t.Fatalf("%q accepted, canonical %q", p, want)
		}
	})
}
