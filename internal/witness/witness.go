package witness

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/internal/atomicfile"
	"github.com/cofferhsm/coffer/internal/filelock"
)

// Error is a refusal, with the HTTP status tlog-witness gives it.
type Error struct {
	Status int
	// Size is the tree size the witness last cosigned for the origin, set
	// with Status 409 when the log's old size was not it.
	Size    uint64
	HasSize bool
	Msg     string
}

func (e *Error) Error() string { return "witness: " + e.Msg }

func refuse(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Witness cosigns checkpoints of the logs it knows.
type Witness struct {
	signer *fnote.Signer
	dir    string
	logs   map[string]*witnessedLog // by origin
	unlock func()
}

type witnessedLog struct {
	origin   string
	verifier note.Verifier
	mu       sync.Mutex // one update of this log at a time: read state, check, write state
}

// state is what the witness keeps per log: the newest tree it cosigned.
type state struct {
	Origin     string `json:"origin"`
	Size       uint64 `json:"size"`
	Root       []byte `json:"root"`
	Checkpoint string `json:"checkpoint"` // the log-signed note, kept as evidence
}

// New makes a witness that signs with skey (a note private key, used as
// cosignature/v1), keeps its state in dir (created if missing, locked
// against a second witness process) and witnesses the logs given as
// origin → note verifier key.
func New(skey, dir string, logs map[string]string) (*Witness, error) {
	signer, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness: key: %v", err)
	}
	if len(logs) == 0 {
		return nil, errors.New("witness: no log to witness (-log ORIGIN=VKEY)")
	}
	w := &Witness{signer: signer, dir: dir, logs: map[string]*witnessedLog{}}
	for origin, vkey := range logs {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, fmt.Errorf("witness: log %q: key %q: %v", origin, vkey, err)
		}
		if origin == "" || strings.ContainsAny(origin, "\n") {
			return nil, fmt.Errorf("witness: bad origin %q", origin)
		}
		w.logs[origin] = &witnessedLog{origin: origin, verifier: v}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("witness: state folder: %v", err)
	}
	if w.unlock, err = filelock.TryLock(filepath.Join(dir, "lock")); err != nil {
		return nil, fmt.Errorf("witness: state folder: %w", err)
	}
	return w, nil
}

// Close releases the state folder.
func (w *Witness) Close() {
	if w.unlock != nil {
		w.unlock()
		w.unlock = nil
	}
}

// Name is the witness's key name, as its cosignatures carry it.
func (w *Witness) Name() string { return w.signer.Name() }

func (l *witnessedLog) statePath(dir string) string {
	sum := sha256.Sum256([]byte(l.origin))
	return filepath.Join(dir, "log-"+hex.EncodeToString(sum[:16])+".json")
}

// load returns the stored state, or a zero one if the witness never
// cosigned this log. A state file that does not read back is an error,
// never a fresh start: a witness that forgot a log would cosign its fork.
func (l *witnessedLog) load(dir string) (*state, error) {
	b, err := os.ReadFile(l.statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return &state{Origin: l.origin}, nil
	}
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil || s.Origin != l.origin || s.Size > 0 && len(s.Root) != sha256.Size {
		return nil, fmt.Errorf("state of log %q does not read back", l.origin)
	}
	return &s, nil
}

func (l *witnessedLog) store(dir string, s *state) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.Write(l.statePath(dir), b)
}

// AddCheckpoint handles one add-checkpoint request body and returns the
// cosignature line(s) to send back, or an *Error.
func (w *Witness) AddCheckpoint(body []byte) ([]byte, error) {
	req, err := ParseRequest(body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "%v", err)
	}
	origin, _, _ := strings.Cut(string(req.Checkpoint), "\n")
	l := w.logs[origin]
	if l == nil {
		return nil, refuse(http.StatusNotFound, "unknown log origin %q", origin)
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(l.verifier))
	if err != nil {
		return nil, refuse(http.StatusForbidden, "checkpoint of %q not signed by its log key: %v", origin, err)
	}
	cp, _, _, err := log.ParseCheckpoint(req.Checkpoint, origin, l.verifier)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "checkpoint of %q: %v", origin, err)
	}
	if len(cp.Hash) != sha256.Size {
		return nil, refuse(http.StatusBadRequest, "checkpoint root of %d bytes", len(cp.Hash))
	}
	if cp.Size == 0 && !bytes.Equal(cp.Hash, rfc6962.DefaultHasher.EmptyRoot()) {
		return nil, refuse(http.StatusBadRequest, "an empty tree with a root that is not the empty root")
	}
	if req.OldSize > cp.Size {
		return nil, refuse(http.StatusBadRequest, "old size %d is above the checkpoint's size %d", req.OldSize, cp.Size)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	st, err := l.load(w.dir)
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, "%v", err)
	}
	if req.OldSize != st.Size {
		return nil, &Error{Status: http.StatusConflict, Size: st.Size, HasSize: true,
			Msg: fmt.Sprintf("log %q says old size %d; this witness last cosigned size %d", origin, req.OldSize, st.Size)}
	}
	if st.Size == cp.Size {
		if len(req.Proof) != 0 {
			return nil, refuse(http.StatusUnprocessableEntity, "a proof between two trees of size %d", cp.Size)
		}
		if st.Root != nil && !bytes.Equal(st.Root, cp.Hash) {
			return nil, refuse(http.StatusConflict, "log %q forked: a second root for size %d", origin, cp.Size)
		}
	} else if err := proof.VerifyConsistency(rfc6962.DefaultHasher, st.Size, cp.Size, req.Proof, st.Root, cp.Hash); err != nil {
		return nil, refuse(http.StatusUnprocessableEntity, "log %q: size %d is not consistent with size %d: %v", origin, cp.Size, st.Size, err)
	}
	next := &state{Origin: origin, Size: cp.Size, Root: cp.Hash, Checkpoint: string(req.Checkpoint)}
	if err := l.store(w.dir, next); err != nil {
		// Never cosign what the witness could forget.
		return nil, refuse(http.StatusInternalServerError, "saving the state of %q: %v", origin, err)
	}
	return w.cosign(n.Text)
}

// cosign signs the checkpoint's text (cosignature/v1) and returns just the
// signature line, which the log appends to its note.
func (w *Witness) cosign(text string) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: text}, w.signer)
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, "cosigning: %v", err)
	}
	return signed[len(text)+1:], nil
}
