package host

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cofferhsm/coffer/internal/filelock"
	"github.com/cofferhsm/coffer/protocol"
)

// Realm storage (protocol/REALMS.md section 7, "The manifest and the resume
// blob at the hosts"). A realm set's manifest is public and too large for a
// vault record, and the resume blob of an unfinished change is sealed under
// a key only the user's devices derive; cofferd keeps both for the account
// so that any of the user's devices can fetch them. cofferd holds no key and
// verifies nothing: it stores bytes, and the client checks every hash
// against what t realms signed. A host that withholds or evicts only
// destroys, as dropping traffic does.

// Limits of realm storage, per account.
const (
	MaxRealmManifestSize = protocol.MaxManifestSize // bytes of one encoded manifest (2048)
	MaxRealmBlobSize     = 4096                     // bytes of one resume blob
	RealmItemsKept       = 4                        // manifests kept, and blobs kept; a fifth PUT evicts the oldest

	// maxRealmFileSize bounds what is read back from an account's file:
	// four of each at their limits, base64 and JSON included, take about
	// half of it (34 KiB).
	maxRealmFileSize = 64 << 10
	realmFileVersion = 1
)

// ManifestHashSize is the size of a manifest hash.
const ManifestHashSize = sha256.Size

// manifestHash is REALMS.md's manifest_hash of an encoded manifest
// (protocol.ManifestHash), as an array.
func manifestHash(body []byte) [ManifestHashSize]byte {
	var h [ManifestHashSize]byte
	copy(h[:], protocol.ManifestHash(body))
	return h
}

// RealmKind says which of the two realm items a request names.
type RealmKind int

const (
	RealmManifest RealmKind = iota + 1
	RealmBlob
)

func (k RealmKind) String() string {
	switch k {
	case RealmManifest:
		return "manifest"
	case RealmBlob:
		return "blob"
	}
	return fmt.Sprintf("RealmKind(%d)", int(k))
}

// MaxSize is the largest item of this kind cofferd stores.
func (k RealmKind) MaxSize() int {
	if k == RealmManifest {
		return MaxRealmManifestSize
	}
	return MaxRealmBlobSize
}

// Errors of RealmStore.
var (
	ErrRealmNotFound = errors.New("host: no such realm item for this account")
	ErrRealmTooLarge = errors.New("host: realm item too large")
	ErrRealmEmpty    = errors.New("host: empty realm item")
)

// realmItem is one stored manifest or blob. For a manifest Hash is its
// manifest_hash (checked against Body when read back); for a blob, the
// manifest hash it was PUT under.
type realmItem struct {
	Hash hexBytes `json:"hash"`
	Body []byte   `json:"body"` // base64 in the file
}

// realmFile is the JSON layout of one account's realm file. Each list is in
// PUT order, oldest first: that order is the eviction order.
type realmFile struct {
	Version   int         `json:"version"`
	Manifests []realmItem `json:"manifests"`
	Blobs     []realmItem `json:"blobs"`
}

func (f *realmFile) items(k RealmKind) *[]realmItem {
	if k == RealmManifest {
		return &f.Manifests
	}
	return &f.Blobs
}

func (f *realmFile) empty() bool { return len(f.Manifests) == 0 && len(f.Blobs) == 0 }

// decodeRealmFile reads an account's realm file strictly. The file is
// cofferd's own, but it sits on disk where anything may have happened to
// it, so everything is checked: the layout, the bounds of counts and
// sizes, no hash twice, and every manifest against its hash.
func decodeRealmFile(b []byte) (*realmFile, error) {
	if len(b) > maxRealmFileSize {
		return nil, fmt.Errorf("%d bytes exceeds %d", len(b), maxRealmFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f realmFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	if f.Version != realmFileVersion {
		return nil, fmt.Errorf("realm file version %d, want %d", f.Version, realmFileVersion)
	}
	for _, k := range []RealmKind{RealmManifest, RealmBlob} {
		items := *f.items(k)
		if len(items) > RealmItemsKept {
			return nil, fmt.Errorf("%d %ss, at most %d are kept", len(items), k, RealmItemsKept)
		}
		seen := map[string]bool{}
		for i, it := range items {
			switch {
			case len(it.Hash) != ManifestHashSize:
				return nil, fmt.Errorf("%s %d: hash of %d bytes", k, i, len(it.Hash))
			case len(it.Body) == 0 || len(it.Body) > k.MaxSize():
				return nil, fmt.Errorf("%s %d: %d bytes, want 1..%d", k, i, len(it.Body), k.MaxSize())
			case seen[string(it.Hash)]:
				return nil, fmt.Errorf("%s %d: hash %x twice", k, i, []byte(it.Hash))
			}
			if k == RealmManifest {
				if h := manifestHash(it.Body); !bytes.Equal(h[:], it.Hash) {
					return nil, fmt.Errorf("manifest %d does not match its hash %x", i, []byte(it.Hash))
				}
			}
			seen[string(it.Hash)] = true
		}
	}
	return &f, nil
}

// RealmStore keeps each account's realm manifests and resume blobs in a
// folder, one JSON file per account named by its user id in hex, each
// replaced atomically (temporary file, fsync, rename, fsync of the folder)
// on every change, so a crash leaves an account's old file or its new one.
// One file per account keeps a PUT's cost bounded by that account's own
// limits, however many accounts there are. The folder is locked for the
// life of the store, so two daemons never share it.
type RealmStore struct {
	dir    string
	unlock func()
	// stripes serialise the read-modify-write of one account's file; one
	// lock per stripe of accounts, so a busy account slows few others.
	stripes [32]sync.Mutex
}

// OpenRealmStore opens (creating, mode 0700) the folder dir for realm
// storage and locks it. Close releases the lock.
func OpenRealmStore(dir string) (*RealmStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	unlock, err := filelock.TryLock(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("realm storage %s: %w", dir, err)
	}
	// Temporary files left by a crash mid-write are never renamed: drop
	// them. The lock says no other process is writing here.
	if stale, err := filepath.Glob(filepath.Join(dir, ".*.tmp")); err == nil {
		for _, p := range stale {
			os.Remove(p)
		}
	}
	return &RealmStore{dir: dir, unlock: unlock}, nil
}

// Close releases the folder's lock.
func (s *RealmStore) Close() error {
	s.unlock()
	return nil
}

// Dir is the store's folder.
func (s *RealmStore) Dir() string { return s.dir }

func (s *RealmStore) path(userID []byte) string {
	return filepath.Join(s.dir, hex.EncodeToString(userID)+".json")
}

func (s *RealmStore) lock(userID []byte) func() {
	m := &s.stripes[crc32.ChecksumIEEE(userID)%uint32(len(s.stripes))]
	m.Lock()
	return m.Unlock
}

// read returns the account's file, or an empty one if it has none.
func (s *RealmStore) read(userID []byte) (*realmFile, error) {
	if len(userID) == 0 || len(userID) > 64 {
		return nil, fmt.Errorf("host: user id of %d bytes", len(userID))
	}
	p := s.path(userID)
	fh, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return &realmFile{Version: realmFileVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxRealmFileSize+1))
	if err != nil {
		return nil, err
	}
	f, err := decodeRealmFile(b)
	if err != nil {
		return nil, fmt.Errorf("host: realm file %s: %w", p, err)
	}
	return f, nil
}

// update runs fn on the account's file and writes the result (or removes
// the file when nothing is left). When fn fails nothing is written.
func (s *RealmStore) update(userID []byte, fn func(*realmFile) error) error {
	defer s.lock(userID)()
	f, err := s.read(userID)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	p := s.path(userID)
	if f.empty() {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		syncDir(s.dir)
		return nil
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p, append(b, '\n'))
}

func checkRealmBody(k RealmKind, body []byte) error {
	if len(body) == 0 {
		return fmt.Errorf("%w: an empty %s", ErrRealmEmpty, k)
	}
	if len(body) > k.MaxSize() {
		return fmt.Errorf("%w: a %s of %d bytes, at most %d", ErrRealmTooLarge, k, len(body), k.MaxSize())
	}
	return nil
}

// put stores body under hash as the newest item of its kind: a PUT of a
// hash already held replaces it and makes it the newest (a client re-PUTs
// what it still needs on every recovery); beyond RealmItemsKept the oldest
// is evicted.
func (s *RealmStore) put(userID []byte, k RealmKind, hash [ManifestHashSize]byte, body []byte) error {
	if err := checkRealmBody(k, body); err != nil {
		return err
	}
	return s.update(userID, func(f *realmFile) error {
		items := f.items(k)
		*items = slices.DeleteFunc(*items, func(it realmItem) bool { return bytes.Equal(it.Hash, hash[:]) })
		*items = append(*items, realmItem{Hash: bytes.Clone(hash[:]), Body: bytes.Clone(body)})
		if n := len(*items) - RealmItemsKept; n > 0 {
			*items = slices.Delete(*items, 0, n)
		}
		return nil
	})
}

// PutManifest stores an encoded manifest for the account and returns its
// manifest_hash.
func (s *RealmStore) PutManifest(userID, body []byte) ([ManifestHashSize]byte, error) {
	h := manifestHash(body)
	return h, s.put(userID, RealmManifest, h, body)
}

// PutBlob stores a resume blob for the account under a manifest hash.
// cofferd cannot check that the blob belongs to that manifest: the client
// does, when it opens the blob.
func (s *RealmStore) PutBlob(userID []byte, hash [ManifestHashSize]byte, body []byte) error {
	return s.put(userID, RealmBlob, hash, body)
}

// Get returns the account's item of kind k under hash, or ErrRealmNotFound.
func (s *RealmStore) Get(userID []byte, k RealmKind, hash [ManifestHashSize]byte) ([]byte, error) {
	defer s.lock(userID)()
	f, err := s.read(userID)
	if err != nil {
		return nil, err
	}
	for _, it := range *f.items(k) {
		if bytes.Equal(it.Hash, hash[:]) {
			return it.Body, nil
		}
	}
	return nil, fmt.Errorf("%w: no %s %x", ErrRealmNotFound, k, hash[:])
}

// Delete removes the account's item of kind k under hash, or answers
// ErrRealmNotFound.
func (s *RealmStore) Delete(userID []byte, k RealmKind, hash [ManifestHashSize]byte) error {
	return s.update(userID, func(f *realmFile) error {
		items := f.items(k)
		n := len(*items)
		*items = slices.DeleteFunc(*items, func(it realmItem) bool { return bytes.Equal(it.Hash, hash[:]) })
		if len(*items) == n {
			return fmt.Errorf("%w: no %s %x", ErrRealmNotFound, k, hash[:])
		}
		return nil
	})
}
