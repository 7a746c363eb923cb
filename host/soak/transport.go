package soak

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/protocol"
)

// meter is one client's HTTP transport. It sees every exchange with
// cofferd, whichever client library made it: it times it, sorts its outcome
// into answered, explicit backpressure or failure, and feeds the account's
// model the clear parts of the protocol (login-start receipts, which KE3s
// and confirmations were answered).
type meter struct {
	base  http.RoundTripper
	acct  *account
	stats *clientStats
	tot   *totals
}

// totals are the run's counters shared by every client.
type totals struct {
	answered      [protocol.TypeInstallIdentity + 1]atomic.Int64 // 200 replies by request type
	rateLimited   atomic.Int64                                   // HTTP 429
	unavailable   atomic.Int64                                   // HTTP 503
	vaultBusy     atomic.Int64                                   // the vault's busy code
	wrongFinishes atomic.Int64                                   // KE3s refused with authentication (wrong guesses)
	failed        atomic.Int64                                   // exchanges that failed otherwise
	recording     atomic.Bool                                    // keep latencies (the timed run)
}

// clientStats are one client's latencies by request type (answered
// exchanges only), merged at the end.
type clientStats struct {
	lat map[protocol.Type][]time.Duration
}

// request is what the meter reads of a request before sending it.
type request struct {
	typ    protocol.Type
	name   string
	ke1    []byte // login-start
	handle []byte // login-finish, session
	seq    uint64 // session
}

func readRequest(req *http.Request) (request, error) {
	switch req.URL.Path {
	case "/v1/identity":
		return request{typ: protocol.TypeIdentity, name: "identity"}, nil
	case "/v1/vault":
	default:
		return request{name: req.URL.Path}, nil
	}
	if req.GetBody == nil {
		return request{}, errors.New("a request body that cannot be read twice")
	}
	rc, err := req.GetBody()
	if err != nil {
		return request{}, err
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return request{}, err
	}
	route, err := host.ParseRoute(body)
	if err != nil {
		return request{}, err
	}
	r := request{typ: route.Type, name: route.Type.String()}
	switch r.typ {
	case protocol.TypeLoginStart:
		var m protocol.LoginStart
		err = protocol.Decode(body, r.typ, &m)
		r.ke1 = m.KE1
	case protocol.TypeLoginFinish:
		var m protocol.LoginFinish
		err = protocol.Decode(body, r.typ, &m)
		r.handle = m.Handle
	case protocol.TypeSession:
		var m protocol.Session
		err = protocol.Decode(body, r.typ, &m)
		r.handle, r.seq = m.Handle, m.Seq
	}
	return r, err
}

func (m *meter) RoundTrip(req *http.Request) (*http.Response, error) {
	r, err := readRequest(req)
	if err != nil {
		m.acct.failf("driver", "reading its own request: %v", err)
		return nil, err
	}
	start := time.Now()
	resp, err := m.base.RoundTrip(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			resp = nil
		}
	}
	m.observe(r, time.Since(start), resp, body, err)
	return resp, err
}

// observe sorts one exchange.
func (m *meter) observe(r request, d time.Duration, resp *http.Response, body []byte, err error) {
	lost := func(why string) {
		m.tot.failed.Add(1)
		m.acct.failf("not-explicit "+r.name, "%s", why)
		switch {
		case r.typ == protocol.TypeLoginStart:
			m.acct.loginStartLost()
		case r.typ == protocol.TypeLoginFinish:
			m.acct.loginFinished(r.handle, false, 0)
		case r.typ == protocol.TypeSession && r.seq == 1:
			m.acct.confirmation(r.handle, false, true)
		}
	}
	refused := func() {
		// Explicit backpressure: nothing was sent to the vault, or the
		// vault counted nothing. A login that got its KE2 and then this
		// at KE3 stays a counted, failed attempt.
		if r.typ == protocol.TypeLoginFinish {
			m.acct.loginFinished(r.handle, false, 0)
		}
	}
	switch {
	case err != nil:
		lost(err.Error())
		return
	case resp.StatusCode == http.StatusTooManyRequests:
		m.tot.rateLimited.Add(1)
		refused()
		return
	case resp.StatusCode == http.StatusServiceUnavailable:
		m.tot.unavailable.Add(1)
		refused()
		return
	case resp.StatusCode != http.StatusOK:
		lost(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body)))
		return
	}
	if m.tot.recording.Load() {
		m.stats.lat[r.typ] = append(m.stats.lat[r.typ], d)
	}
	if int(r.typ) < len(m.tot.answered) {
		m.tot.answered[r.typ].Add(1)
	}
	if t, err := protocol.PeekType(body); err == nil && t == protocol.TypeError {
		m.vaultError(r, protocol.CodeOf(protocol.Decode(body, protocol.TypeError, &protocol.Empty{})))
		return
	}
	switch r.typ {
	case protocol.TypeLoginStart:
		var reply protocol.LoginStartReply
		if err := protocol.Decode(body, r.typ, &reply); err != nil {
			m.acct.failf("reply", "login-start reply: %v", err)
			m.acct.loginStartLost()
			return
		}
		receipt, err := reply.Receipt.Verify(m.acct.signing)
		if err != nil || !bytes.Equal(receipt.UserID, m.acct.userID) {
			m.acct.failf("receipt", "login-start receipt does not verify for this user: %v", err)
			m.acct.loginStartLost()
			return
		}
		m.acct.loginStarted(r.ke1, reply.Handle, receipt)
	case protocol.TypeLoginFinish:
		m.acct.loginFinished(r.handle, true, 0)
	case protocol.TypeSession:
		if r.seq == 1 {
			m.acct.confirmation(r.handle, true, false)
		}
	}
}

// vaultError sorts an error reply: busy is backpressure, a wrong guess's
// KE3 is expected, anything else is a failure.
func (m *meter) vaultError(r request, code protocol.Code) {
	switch {
	case code == protocol.CodeBusy:
		m.tot.vaultBusy.Add(1)
		if r.typ == protocol.TypeLoginFinish {
			m.acct.loginFinished(r.handle, false, 0)
		}
		return
	case code == protocol.CodeAuthentication && r.typ == protocol.TypeLoginFinish:
		m.tot.wrongFinishes.Add(1)
		m.acct.loginFinished(r.handle, false, code)
		return
	}
	m.tot.failed.Add(1)
	m.acct.failf("vault-error "+code.String(), "in reply to %s", r.name)
	switch {
	case r.typ == protocol.TypeLoginStart:
		// Refused after counting (a failed commit, a lost reply) or before:
		// the next receipt says which.
		m.acct.loginStartLost()
	case r.typ == protocol.TypeLoginFinish:
		m.acct.loginFinished(r.handle, false, code)
	case r.typ == protocol.TypeSession && r.seq == 1:
		// Refused before the confirmation was counted (sequence,
		// authentication), or after (a command error): uncertain.
		m.acct.confirmation(r.handle, false, true)
	}
}
