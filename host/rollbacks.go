package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A rollback declaration is the operator's statement, on record, that a
// vault device's store went back to an older state (restored from a backup
// or an old copy) or was lost, and that the newer state will not come
// back. Clients whose vault signs a lower store sequence than they have
// seen stop (protocol/SPEC.md, "Receipts"); cofferd serves the declarations
// so that the user sees the operator owns up to the rollback, rather than
// silence, before accepting the vault's state (OPERATIONS.md, "Recovering
// from a rollback"). A declaration proves nothing: cofferd is not trusted,
// and whoever can roll a store back can write one. It is never a reason
// for a client to accept a rollback by itself.
type RollbackDeclaration struct {
	Device     string    `json:"device"`
	DeclaredAt time.Time `json:"declared_at"`
	Reason     string    `json:"reason"`
}

// Bounds of the rollbacks file and of what is served.
const (
	MaxRollbackReason   = 500     // characters in a reason
	rollbacksServed     = 10      // the latest declarations of a device, served
	maxRollbacksFile    = 1 << 20 // bytes
	rollbacksVersion    = 1
	defaultRollbackFile = "cofferd-rollbacks.json"
)

// DefaultRollbacksPath is where cofferd keeps the rollback declarations
// unless told otherwise: beside the file at the path given (cofferd
// passes its SQLite database).
func DefaultRollbacksPath(accountsPath string) string {
	return filepath.Join(filepath.Dir(accountsPath), defaultRollbackFile)
}

type rollbacksFile struct {
	Version      int                   `json:"version"`
	Declarations []RollbackDeclaration `json:"declarations"`
}

// CheckRollbackReason refuses a reason that is empty, longer than
// MaxRollbackReason characters, not UTF-8, or holds a control or format
// character (a line break, an escape, a bidirectional override): clients
// print it to their user as it is.
func CheckRollbackReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return errors.New("the reason is empty: say what happened (restored from which backup, store lost, ...)")
	}
	if !utf8.ValidString(reason) {
		return errors.New("the reason is not UTF-8")
	}
	if n := utf8.RuneCountInString(reason); n > MaxRollbackReason {
		return fmt.Errorf("the reason is %d characters, at most %d", n, MaxRollbackReason)
	}
	for _, r := range reason {
		if !strconv.IsPrint(r) {
			return fmt.Errorf("the reason holds the character %q: only printable characters and spaces", r)
		}
	}
	return nil
}

func readRollbacksFile(path string) (*rollbacksFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &rollbacksFile{Version: rollbacksVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRollbacksFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRollbacksFile {
		return nil, fmt.Errorf("%s: over %d bytes", path, maxRollbacksFile)
	}
	return decodeRollbacks(path, b)
}

// decodeRollbacks reads a rollbacks file's bytes strictly: its layout, its
// version, and each declaration's device name, reason and time.
func decodeRollbacks(path string, b []byte) (*rollbacksFile, error) {
	var rf rollbacksFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rf.Version != rollbacksVersion {
		return nil, fmt.Errorf("%s: rollbacks file version %d, want %d", path, rf.Version, rollbacksVersion)
	}
	for i, d := range rf.Declarations {
		if !deviceNameRE.MatchString(d.Device) {
			return nil, fmt.Errorf("%s: declaration %d: bad device name %q", path, i+1, d.Device)
		}
		if err := CheckRollbackReason(d.Reason); err != nil {
			return nil, fmt.Errorf("%s: declaration %d: %w", path, i+1, err)
		}
		if d.DeclaredAt.IsZero() {
			return nil, fmt.Errorf("%s: declaration %d: no time", path, i+1)
		}
	}
	return &rf, nil
}

func writeRollbacksFile(path string, rf *rollbacksFile) error {
	b, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// CreateRollbacksFile writes an empty rollbacks file if there is none, so
// that it belongs to the daemon's user and `cofferd vault declare-rollback`
// run as root keeps that.
func CreateRollbacksFile(path string) error {
	return createOnce(path, func() error {
		return writeRollbacksFile(path, &rollbacksFile{Version: rollbacksVersion, Declarations: []RollbackDeclaration{}})
	})
}

// DeclareRollback records, in the rollbacks file at path, that device's
// store was rolled back or lost, for reason, at now. A running cofferd
// serves it at once (it reads the file at each request).
func DeclareRollback(path, device, reason string, now time.Time) (RollbackDeclaration, error) {
	if !deviceNameRE.MatchString(device) {
		return RollbackDeclaration{}, fmt.Errorf("device name %q is not valid", device)
	}
	if err := CheckRollbackReason(reason); err != nil {
		return RollbackDeclaration{}, err
	}
	d := RollbackDeclaration{Device: device, DeclaredAt: now.UTC().Truncate(time.Second), Reason: reason}
	err := underLock(path, func() error {
		rf, err := readRollbacksFile(path)
		if err != nil {
			return err
		}
		rf.Declarations = append(rf.Declarations, d)
		return writeRollbacksFile(path, rf)
	})
	if err != nil {
		return RollbackDeclaration{}, err
	}
	return d, nil
}

// LoadRollbacks reads the rollback declarations in path, oldest first.
func LoadRollbacks(path string) ([]RollbackDeclaration, error) {
	rf, err := readRollbacksFile(path)
	if err != nil {
		return nil, err
	}
	return rf.Declarations, nil
}

// RollbacksInfo is the body of GET /v1/rollbacks: the latest declarations
// for the account's device, oldest first.
type RollbacksInfo struct {
	Device       string                `json:"device"`
	Declarations []RollbackDeclaration `json:"declarations"`
}

func (s *Server) handleRollbacks(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "rollbacks"}
	defer s.record(r, o, start)
	_, q := s.getForAccount(w, r, o)
	if q == nil {
		return
	}
	if s.cfg.Rollbacks == "" {
		o.status = http.StatusNotImplemented
		writeError(w, o.status, "rollback declarations are not served by this cofferd", "")
		return
	}
	all, err := LoadRollbacks(s.cfg.Rollbacks)
	if err != nil {
		o.status, o.note = http.StatusInternalServerError, err.Error()
		s.log.Warn("rollbacks file unreadable", "file", s.cfg.Rollbacks, "err", err)
		writeError(w, o.status, "the rollback declarations could not be read", "")
		return
	}
	info := RollbacksInfo{Device: q.dev.Name(), Declarations: []RollbackDeclaration{}}
	for _, d := range all {
		if d.Device == info.Device {
			info.Declarations = append(info.Declarations, d)
		}
	}
	info.Declarations = info.Declarations[max(0, len(info.Declarations)-rollbacksServed):]
	o.status = http.StatusOK
	writeJSON(w, o.status, info)
}

// checkRollbacks logs, at start, a rollbacks file that does not read and
// declarations for devices that are not configured (a typo in -device).
func (s *Server) checkRollbacks() {
	if s.cfg.Rollbacks == "" {
		return
	}
	all, err := LoadRollbacks(s.cfg.Rollbacks)
	if err != nil {
		s.log.Error("rollbacks file unreadable: GET /v1/rollbacks answers 500 until it is fixed", "file", s.cfg.Rollbacks, "err", err)
		return
	}
	for _, d := range all {
		if s.byName[d.Device] == nil {
			s.log.Warn("rollback declaration for a device that is not configured; no client is shown it",
				"file", s.cfg.Rollbacks, "device", d.Device, "declared_at", d.DeclaredAt)
		}
	}
}
