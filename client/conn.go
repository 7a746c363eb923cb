package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// maxReply bounds what is read of any cofferd response: vault envelopes are
// at most protocol.MaxMessageSize, error bodies are short.
const maxReply = protocol.MaxMessageSize + 1024

// Conn talks to cofferd's HTTP API (host/API.md). It never retries a
// request: a login step that reached the vault may have been counted, so
// only the user decides to try again.
type Conn struct {
	base  *url.URL
	token string
	http  *http.Client

	vaultURL string   // base joined with /v1/vault, resolved once
	auth     []string // the Authorization header's value
}

// transport is what Conns use unless given an http.Client: Go's default
// transport (proxy from the environment, HTTP/2 over TLS, 90-second idle
// timeout) keeping up to maxIdlePerHost idle connections to each cofferd
// instead of 2, so that concurrent requests (several accounts in one
// process, realms that share a cofferd) reuse their connections rather
// than dialling, and shaking hands, anew for each request.
var transport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * maxIdlePerHost
	t.MaxIdleConnsPerHost = maxIdlePerHost
	return t
}()

const maxIdlePerHost = 64

// NewConn prepares a connection to the cofferd at server (a base URL) with
// a bearer token. A nil httpClient uses one with a 60-second timeout over a
// transport shared by every Conn of the process. Redirects are never
// followed: the token and the vault requests go only to the configured
// server.
func NewConn(server, token string, httpClient *http.Client) (*Conn, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("client: server %q is not an http(s) URL", server)
	}
	if token == "" {
		return nil, errors.New("client: no cofferd token")
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 60 * time.Second, Transport: transport}
	}
	hc := *httpClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Conn{base: u, token: token, http: &hc,
		vaultURL: u.JoinPath("/v1/vault").String(), auth: []string{"Bearer " + token}}, nil
}

// ServerError is a non-200 answer from cofferd itself (not from the vault:
// vault errors arrive as *protocol.Error). Error explains what to do.
type ServerError struct {
	StatusCode int
	Message    string        // cofferd's {"error": …}, if any
	RetryAfter time.Duration // from Retry-After, if any
	Step       string        // what was asked, e.g. "login-start"
}

// Sentinels for errors.Is: a *ServerError matches the one of its status.
var (
	ErrUnauthorized = &ServerError{StatusCode: http.StatusUnauthorized}
	ErrForbidden    = &ServerError{StatusCode: http.StatusForbidden}
	ErrRateLimited  = &ServerError{StatusCode: http.StatusTooManyRequests}
	ErrUnavailable  = &ServerError{StatusCode: http.StatusServiceUnavailable}
	ErrTimeout      = &ServerError{StatusCode: http.StatusGatewayTimeout}
)

// Is matches on the status code alone.
func (e *ServerError) Is(target error) bool {
	t, ok := target.(*ServerError)
	return ok && t.StatusCode == e.StatusCode
}

func (e *ServerError) Error() string {
	var s string
	wait := ""
	if e.RetryAfter > 0 {
		wait = fmt.Sprintf(" in %s", e.RetryAfter.Round(time.Second))
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		s = "cofferd refused the token (401): check the token in the configuration"
	case http.StatusForbidden:
		s = "cofferd refused the request (403): it names another account's user id; check user_id in the configuration"
	case http.StatusTooManyRequests:
		s = fmt.Sprintf("too many logins for this account (429): cofferd rate-limits them; try again%s", wait)
	case http.StatusServiceUnavailable:
		s = fmt.Sprintf("the vault is unavailable (503: its queue is full, or it is disconnected or rebooting); try again%s", wait)
		if e.Step == protocol.TypeLoginFinish.String() {
			s += "; a login starts again from the beginning"
		}
	case http.StatusGatewayTimeout:
		s = "the vault did not answer in time (504); the request may have been processed"
		if strings.HasPrefix(e.Step, "login") {
			s += ", so it may have counted as a login attempt"
		}
		s += "; try again"
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		s = fmt.Sprintf("cofferd rejected the request as malformed (%d): this is a client bug", e.StatusCode)
	default:
		s = fmt.Sprintf("cofferd answered HTTP %d", e.StatusCode)
	}
	if e.Step != "" {
		s = e.Step + ": " + s
	}
	if e.Message != "" {
		s += fmt.Sprintf(" (cofferd: %q)", e.Message)
	}
	return s
}

// Account is cofferd's GET /v1/account.
type Account struct {
	UserID []byte
	Device string
}

// Account asks cofferd which account the token names.
func (c *Conn) Account(ctx context.Context) (*Account, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/account", nil, "account")
	if err != nil {
		return nil, err
	}
	var a struct {
		UserID string `json:"user_id"`
		Device string `json:"device"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("client: cofferd's account reply: %w", err)
	}
	id, err := hex.DecodeString(a.UserID)
	if err != nil || len(id) == 0 || len(id) > protocol.MaxUserIDSize {
		return nil, fmt.Errorf("client: cofferd's account reply has a bad user id %q", a.UserID)
	}
	return &Account{UserID: id, Device: a.Device}, nil
}

// Identity fetches the vault's identity bundle envelope (unverified: the
// caller checks it against the pinned provisioning key).
func (c *Conn) Identity(ctx context.Context) (*protocol.SignedIdentity, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/identity", nil, "identity")
	if err != nil {
		return nil, err
	}
	var si protocol.SignedIdentity
	if err := protocol.Decode(b, protocol.TypeIdentity, &si); err != nil {
		return nil, fmt.Errorf("client: identity bundle: %w", err)
	}
	return &si, nil
}

// Call sends one vault request of type t and decodes the reply into reply.
// A vault error reply is returned as *protocol.Error.
func (c *Conn) Call(ctx context.Context, t protocol.Type, req, reply protocol.Message) error {
	b, err := protocol.Encode(t, req)
	if err != nil {
		return err
	}
	out, err := c.RoundTrip(ctx, b, t.String())
	if err != nil {
		return err
	}
	if err := protocol.Decode(out, t, reply); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeOutcomeUnknown {
			return fmt.Errorf("%s: %s: %w", t, outcomeUnknown(t), pe)
		}
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", t, pe)
		}
		return fmt.Errorf("client: %s reply: %w", t, err)
	}
	return nil
}

// outcomeUnknown says what a lost reply to a request of type t may hide:
// the vault took the request and may have acted on it.
func outcomeUnknown(t protocol.Type) string {
	const lost = "the vault took the request but its reply was lost"
	switch t {
	case protocol.TypeLoginStart:
		return lost + ", so the attempt may have been counted; try again"
	case protocol.TypeLoginFinish:
		return lost + ": the login may have completed (the attempt was counted at its start); log in again"
	case protocol.TypeRegisterFinish:
		return lost + ": the record may have been created"
	case protocol.TypeSession:
		return lost + ": the command (a password change or delete) may have been carried out"
	}
	return lost + ": it may have acted on it"
}

// RoundTrip posts one encoded envelope to /v1/vault and returns the reply
// envelope. step names the request in errors.
func (c *Conn) RoundTrip(ctx context.Context, request []byte, step string) ([]byte, error) {
	return c.do(ctx, http.MethodPost, "/v1/vault", request, step)
}

// cborHeader is the Content-Type of every request with a body, shared.
var cborHeader = []string{"application/cbor"}

func (c *Conn) do(ctx context.Context, method, path string, body []byte, step string) ([]byte, error) {
	u := c.vaultURL // every login step's path: joined once
	if path != "/v1/vault" {
		u = c.base.JoinPath(path).String()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	// Whole values under canonical keys, as Header.Set would store them,
	// shared by every request: the transport only reads them.
	req.Header["Authorization"] = c.auth
	if body != nil {
		req.Header["Content-Type"] = cborHeader
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: cofferd unreachable: %w", step, err)
	}
	defer resp.Body.Close()
	b, err := readReply(resp)
	if err != nil {
		return nil, fmt.Errorf("%s: reading cofferd's reply: %w", step, err)
	}
	if resp.StatusCode == http.StatusNoContent && method == http.MethodDelete {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		se := &ServerError{StatusCode: resp.StatusCode, Step: step}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && len(e.Error) <= 256 {
			se.Message = e.Error
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 && s < 86400 {
			se.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, se
	}
	if len(b) > maxReply {
		return nil, fmt.Errorf("%s: cofferd's reply is over %d bytes", step, maxReply)
	}
	return b, nil
}

// readReply reads at most maxReply+1 bytes of a response body: into a
// buffer of exactly its Content-Length when it states one within the
// bound (one allocation, no copy as the buffer grows), else as it comes.
// Reading to the end lets the connection serve the next request.
func readReply(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= maxReply {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
}
