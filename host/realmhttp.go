package host

import (
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// realmsPrefix is where the realm storage endpoints live (API.md, "Realm
// storage").
const realmsPrefix = "/v1/realms/"

// realmPath is what a realm storage URL names: a kind and, but for PUT
// /v1/realms/manifest (whose hash cofferd computes), a manifest hash.
type realmPath struct {
	kind    RealmKind
	hash    [ManifestHashSize]byte
	hasHash bool
}

var (
	// errRealmNoEndpoint: the path is not a realm storage endpoint (404).
	errRealmNoEndpoint = errors.New("no such endpoint")
	// errRealmBadHash: the path names an endpoint, with a hash that is not
	// one (400).
	errRealmBadHash = fmt.Errorf("the manifest hash must be %d lowercase hex digits", 2*ManifestHashSize)
)

// parseRealmPath reads a realm storage path: /v1/realms/manifest,
// /v1/realms/manifest/{hash} or /v1/realms/blob/{hash}, where hash is
// exactly 64 lowercase hex digits (one spelling per hash, as cofferd writes
// it). With errRealmBadHash it still says which endpoint was meant.
func parseRealmPath(p string) (realmPath, error) {
	rest, ok := strings.CutPrefix(p, realmsPrefix)
	if !ok {
		return realmPath{}, errRealmNoEndpoint
	}
	name, hashText, withHash := strings.Cut(rest, "/")
	var rp realmPath
	switch name {
	case "manifest":
		rp.kind = RealmManifest
	case "blob":
		rp.kind = RealmBlob
	default:
		return realmPath{}, errRealmNoEndpoint
	}
	if !withHash {
		if rp.kind == RealmBlob {
			return realmPath{}, errRealmNoEndpoint // a blob is always named by its manifest's hash
		}
		return rp, nil
	}
	if len(hashText) != 2*ManifestHashSize || strings.ToLower(hashText) != hashText {
		return realmPath{kind: rp.kind, hasHash: true}, errRealmBadHash
	}
	if _, err := hex.Decode(rp.hash[:], []byte(hashText)); err != nil {
		return realmPath{kind: rp.kind, hasHash: true}, errRealmBadHash
	}
	rp.hasHash = true
	return rp, nil
}

// methods says which methods a realm path takes, for 405's Allow.
func (rp realmPath) methods() []string {
	switch {
	case !rp.hasHash:
		return []string{http.MethodPut}
	case rp.kind == RealmManifest:
		return []string{http.MethodGet, http.MethodHead, http.MethodDelete}
	default:
		return []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete}
	}
}

// ManifestHashInfo is the body of a successful realm storage PUT.
type ManifestHashInfo struct {
	ManifestHash string `json:"manifest_hash"`
}

// realmContentTypes are the bodies a realm PUT may declare (or none).
var realmContentTypes = map[string]bool{"application/cbor": true, "application/octet-stream": true}

func (s *Server) handleRealms(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "realm-invalid"}
	defer s.record(r, o, start)
	rp, err := parseRealmPath(r.URL.Path)
	if errors.Is(err, errRealmNoEndpoint) {
		o.status = http.StatusNotFound
		writeError(w, o.status, "no such endpoint", "")
		return
	}
	o.typ = "realm-" + rp.kind.String()
	allowed := rp.methods()
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if !slices.Contains(allowed, method) {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		o.status = http.StatusMethodNotAllowed
		writeError(w, o.status, "method not allowed", "")
		return
	}
	a := s.authenticate(w, r, o)
	if a == nil {
		return
	}
	// An account's realm items live on the host of its device.
	if s.route(w, r, a, o) == nil {
		return
	}
	if err != nil {
		o.status = http.StatusBadRequest
		writeError(w, o.status, err.Error(), "")
		return
	}
	if s.cfg.Realms == nil {
		o.status = http.StatusNotImplemented
		writeError(w, o.status, "this cofferd keeps no realm manifests or blobs", "")
		return
	}
	switch method {
	case http.MethodGet:
		s.getRealmItem(w, a, rp, o)
	case http.MethodDelete:
		s.deleteRealmItem(w, a, rp, o)
	case http.MethodPut:
		s.putRealmItem(w, r, a, rp, o)
	}
}

// realmStoreError answers a RealmStore error.
func realmStoreError(w http.ResponseWriter, err error, o *outcome) {
	switch {
	case errors.Is(err, ErrRealmNotFound):
		o.status = http.StatusNotFound
		writeError(w, o.status, "this account holds no such item", "")
	case errors.Is(err, ErrRealmTooLarge):
		o.status = http.StatusRequestEntityTooLarge
		writeError(w, o.status, err.Error(), "")
	case errors.Is(err, ErrRealmEmpty):
		o.status = http.StatusBadRequest
		writeError(w, o.status, err.Error(), "")
	default:
		// The file could not be read or written: the operator's problem,
		// logged (never a body), and nothing stored was changed.
		o.status, o.note = http.StatusInternalServerError, err.Error()
		writeError(w, o.status, "realm storage failed on this cofferd", "")
	}
}

func (s *Server) getRealmItem(w http.ResponseWriter, a *Account, rp realmPath, o *outcome) {
	body, err := s.cfg.Realms.Get(a.UserID, rp.kind, rp.hash)
	if err != nil {
		realmStoreError(w, err, o)
		return
	}
	ct := "application/octet-stream"
	if rp.kind == RealmManifest {
		ct = "application/cbor"
	}
	o.status = http.StatusOK
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (s *Server) deleteRealmItem(w http.ResponseWriter, a *Account, rp realmPath, o *outcome) {
	if err := s.cfg.Realms.Delete(a.UserID, rp.kind, rp.hash); err != nil {
		realmStoreError(w, err, o)
		return
	}
	o.status = http.StatusNoContent
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(o.status)
}

func (s *Server) putRealmItem(w http.ResponseWriter, r *http.Request, a *Account, rp realmPath, o *outcome) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || !realmContentTypes[mt] {
			o.status = http.StatusUnsupportedMediaType
			writeError(w, o.status, "the body must be application/cbor or application/octet-stream", "")
			return
		}
	}
	limit := rp.kind.MaxSize()
	tooLarge := fmt.Sprintf("a %s is at most %d bytes", rp.kind, limit)
	if r.ContentLength > int64(limit) {
		o.status = http.StatusRequestEntityTooLarge
		writeError(w, o.status, tooLarge, "")
		return
	}
	body, err := readBody(w, r, int64(limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			o.status = http.StatusRequestEntityTooLarge
			writeError(w, o.status, tooLarge, "")
			return
		}
		o.status, o.note = http.StatusBadRequest, "reading body: "+err.Error()
		writeError(w, o.status, "could not read the body", "")
		return
	}
	hash := rp.hash
	if rp.kind == RealmManifest {
		hash, err = s.cfg.Realms.PutManifest(a.UserID, body)
	} else {
		err = s.cfg.Realms.PutBlob(a.UserID, hash, body)
	}
	if err != nil {
		realmStoreError(w, err, o)
		return
	}
	o.status = http.StatusOK
	writeJSON(w, o.status, ManifestHashInfo{ManifestHash: hex.EncodeToString(hash[:])})
}
