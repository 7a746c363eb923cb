package host

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, retry string) {
	if retry != "" {
		w.Header().Set("Retry-After", retry)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cofferd"`)
	}
	writeJSON(w, status, errorBody{Error: msg})
}

// outcome is what a handler did, for metrics and the request log.
type outcome struct {
	typ     string
	status  int
	account string
	acct    *Account // the authenticated account, if any
	device  string
	note    string // for the log: why, never a body
}

func (s *Server) record(r *http.Request, o *outcome, start time.Time) {
	d := time.Since(start)
	m := s.metrics.request(o.typ, o.status)
	m.count.Inc()
	m.seconds.Observe(d.Seconds())
	level := slog.LevelDebug
	if o.status >= 500 {
		level = slog.LevelWarn
	}
	if s.log.Enabled(r.Context(), level) {
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "type", o.typ,
			"status", o.status, "account", o.account, "device", o.device, "duration", d, "note", o.note)
	}
}

// authenticate finds the request's account (its bearer token's; for a
// request a peer forwarded, the one the peer names; on the front listener,
// the fronted user's), or answers 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, o *outcome) *Account {
	if a := peerAccountOf(r.Context()); a != nil {
		o.account, o.acct = a.Name, a
		return a
	}
	if f := frontOf(r.Context()); f != nil {
		return s.authenticateFront(w, r, f, o)
	}
	token, ok := bearerToken(r)
	if !ok {
		o.status, o.note = http.StatusUnauthorized, "no bearer token"
		writeError(w, o.status, "missing bearer token", "")
		return nil
	}
	a, err := s.lookupToken(r.Context(), token)
	if errors.Is(err, errUnknownToken) {
		o.status, o.note = http.StatusUnauthorized, "unknown token"
		writeError(w, o.status, "unknown token", "")
		return nil
	}
	if err != nil {
		o.status, o.note = http.StatusServiceUnavailable, err.Error()
		writeError(w, o.status, errStore.Error(), retryStore)
		return nil
	}
	o.account, o.acct = a.Name, &a
	return &a
}

// getForAccount admits a GET (or HEAD) from an authenticated account and
// returns the account and its device; when it answers the request itself
// (405, 401, 500), it returns nil for both.
func (s *Server) getForAccount(w http.ResponseWriter, r *http.Request, o *outcome) (*Account, *deviceQueue) {
	if !allowMethod(w, r, http.MethodGet, o) {
		return nil, nil
	}
	a := s.authenticate(w, r, o)
	if a == nil {
		return nil, nil
	}
	q := s.route(w, r, a, o)
	if q == nil {
		return nil, nil
	}
	return a, q
}

func allowMethod(w http.ResponseWriter, r *http.Request, method string, o *outcome) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	o.status = http.StatusMethodNotAllowed
	writeError(w, o.status, "method not allowed", "")
	return false
}

// cborType is the media type of vault envelopes, as clients send it: a
// request that says exactly this skips mime.ParseMediaType.
const cborType = "application/cbor"

// Header values of every relayed reply, shared by all of them: set whole
// (canonical keys, as Header.Set would), never appended to or written into.
var (
	cborTypeValue = []string{cborType}
	noStoreValue  = []string{"no-store"}
)

// Retry-After values, in seconds.
const (
	retryQueueFull    = "1"
	retryDisconnected = "2"
)

// relay sends req to the device and answers with the vault's reply, or
// with cofferd's own error.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, q *deviceQueue, reqType protocol.Type, req []byte, o *outcome) {
	dev := q.dev.Name()
	if insecure, _ := q.insecure(); insecure && s.cfg.RefuseInsecure {
		o.status = http.StatusServiceUnavailable
		o.note = "insecure device refused"
		s.metrics.deviceFailures.WithLabelValues(dev, "refused_insecure").Inc()
		writeError(w, o.status, "cofferd refuses this vault device: it is insecure (a software vault or an emulator)", "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	reply, err := q.do(ctx, req)
	if err != nil {
		var reason string
		switch {
		case errors.Is(err, errQueueFull):
			reason = "queue_full"
			o.status = http.StatusServiceUnavailable
			writeError(w, o.status, "the vault device is busy: its queue is full", retryQueueFull)
		case errors.Is(err, errQueueTimeout):
			reason = "queue_timeout"
			o.status = http.StatusServiceUnavailable
			writeError(w, o.status, "the vault device is busy: timed out in its queue; nothing was sent", retryQueueFull)
		case errors.Is(err, ErrDisconnected):
			reason = "disconnected"
			o.status = http.StatusServiceUnavailable
			writeError(w, o.status, "the vault device is disconnected or rebooting; a login restarts at KE1", retryDisconnected)
		case errors.Is(err, context.DeadlineExceeded):
			reason = "timeout"
			o.status = http.StatusGatewayTimeout
			writeError(w, o.status, "the vault did not answer in time; the request may have been processed", "")
		case r.Context().Err() != nil:
			reason = "client_gone"
			o.status = 499 // the client went away; nobody reads this
		default:
			reason = "error"
			o.status = http.StatusBadGateway
			writeError(w, o.status, "the vault device failed", "")
		}
		s.metrics.deviceFailures.WithLabelValues(dev, reason).Inc()
		o.note = err.Error()
		return
	}
	info := inspectReply(reqType, reply)
	if info.errCode != 0 {
		s.metrics.vaultErrors.WithLabelValues(dev, codeLabel(info.errCode)).Inc()
		o.note = "vault error " + codeLabel(info.errCode)
	}
	if info.locked {
		s.metrics.lockouts.Inc()
		if o.acct != nil {
			s.events.locked(ctx, r, o.acct, dev, info)
		}
	}
	o.status = http.StatusOK
	h := w.Header()
	h["Content-Type"] = cborTypeValue
	h["Cache-Control"] = noStoreValue
	h["Content-Length"] = []string{strconv.Itoa(len(reply))}
	w.WriteHeader(http.StatusOK)
	w.Write(reply)
}

func (s *Server) handleVault(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "invalid"}
	defer s.record(r, o, start)
	if !allowMethod(w, r, http.MethodPost, o) {
		return
	}
	a := s.authenticate(w, r, o)
	if a == nil {
		return
	}
	// The device's host checks the request (and spends the rate limit):
	// route forwards it there as it came when that is another host.
	q := s.route(w, r, a, o)
	if q == nil {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != cborType {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/cbor" {
			o.status = http.StatusUnsupportedMediaType
			writeError(w, o.status, "the body must be application/cbor", "")
			return
		}
	}
	if r.ContentLength > protocol.MaxMessageSize {
		o.status = http.StatusRequestEntityTooLarge
		writeError(w, o.status, fmt.Sprintf("body over %d bytes", protocol.MaxMessageSize), "")
		return
	}
	body, err := readBody(w, r, protocol.MaxMessageSize)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			o.status = http.StatusRequestEntityTooLarge
			writeError(w, o.status, fmt.Sprintf("body over %d bytes", protocol.MaxMessageSize), "")
			return
		}
		o.status, o.note = http.StatusBadRequest, "reading body: "+err.Error()
		writeError(w, o.status, "could not read the body", "")
		return
	}
	route, err := ParseRoute(body)
	if err != nil {
		o.status = http.StatusBadRequest
		if errors.Is(err, ErrNotRelayed) {
			o.status, o.note = http.StatusForbidden, "a provisioning request"
		}
		writeError(w, o.status, err.Error(), "")
		return
	}
	o.typ = route.Type.String()
	if route.UserID != nil && string(route.UserID) != string(a.UserID) {
		o.status, o.note = http.StatusForbidden, "another account's user id"
		writeError(w, o.status, "the request names another account's user id", "")
		return
	}
	if route.SpendsGuesses() {
		ok, wait, err := s.takeLogin(r.Context(), a.Name)
		if err != nil {
			// Fail closed: no guess without its bucket.
			o.status, o.note = http.StatusServiceUnavailable, "rate limit: "+err.Error()
			writeError(w, o.status, errStore.Error(), retryStore)
			return
		}
		if !ok {
			s.metrics.rateLimited.Inc()
			s.events.rateLimited(r, a, route.Type, wait, s.cfg.LoginRate, s.cfg.LoginBurst)
			o.status = http.StatusTooManyRequests
			writeError(w, o.status, "too many login starts (or realm challenges and evaluations) for this account", retryAfter(wait))
			return
		}
	}
	s.relay(w, r, q, route.Type, body, o)
}

// readBody reads a request body of at most max bytes: into a buffer of
// exactly its Content-Length when it states one (one allocation, no copy as
// the buffer grows), else, chunked, as it comes. A body over max fails with
// *http.MaxBytesError, one shorter than its Content-Length with
// io.ErrUnexpectedEOF.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, max)
	if n := r.ContentLength; n >= 0 && n <= max {
		b := make([]byte, n)
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(body)
}

func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: protocol.TypeIdentity.String()}
	defer s.record(r, o, start)
	_, q := s.getForAccount(w, r, o)
	if q == nil {
		return
	}
	s.relay(w, r, q, protocol.TypeIdentity, s.identReq, o)
}

// AccountInfo is the body of GET /v1/account.
type AccountInfo struct {
	UserID string `json:"user_id"`
	Device string `json:"device"`
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	o := &outcome{typ: "account"}
	defer s.record(r, o, start)
	a, q := s.getForAccount(w, r, o)
	if q == nil {
		return
	}
	o.status = http.StatusOK
	writeJSON(w, o.status, AccountInfo{UserID: hex.EncodeToString(a.UserID), Device: q.dev.Name()})
}

// authenticateFront finds (or makes) the account of the user the
// messenger's backend names on the front listener (front.go).
func (s *Server) authenticateFront(w http.ResponseWriter, r *http.Request, f *frontContext, o *outcome) *Account {
	if f.user == "" {
		o.status, o.note = http.StatusUnauthorized, "no front user"
		writeJSONError(w, o.status, "missing "+FrontUserHeader+" header")
		return nil
	}
	a, err := s.frontAccount(r.Context(), f.user)
	switch {
	case errors.Is(err, errNotFronted):
		o.status, o.note = http.StatusForbidden, err.Error()
		writeError(w, o.status, "front: "+err.Error(), "")
		return nil
	case err != nil:
		o.status, o.note = http.StatusServiceUnavailable, err.Error()
		writeError(w, o.status, errStore.Error(), retryStore)
		return nil
	}
	o.account, o.acct = a.Name, &a
	return &a
}

// writeJSONError answers an error without writeError's WWW-Authenticate
// (the front listener takes no bearer token).
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}
