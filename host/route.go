package host

import (
	"errors"
	"fmt"

	"github.com/cofferhsm/coffer/protocol"
)

// Route is all that cofferd reads from a vault request: its type and, for
// the requests that name a user in clear, that user id. Everything else
// (handles, sealed bodies) is relayed as it came.
type Route struct {
	Type   protocol.Type
	UserID []byte // register-start, login-start, user-status and the RealmRequests (types 16-20) only
}

// SpendsGuesses reports whether a request of this type starts an attempt
// the vault counts or may count (a login start, a realm challenge or
// evaluation): these share the account's rate limit, so an account cannot
// guess faster by mixing them.
func (r Route) SpendsGuesses() bool {
	switch r.Type {
	case protocol.TypeLoginStart, protocol.TypeRealmChallenge, protocol.TypeRealmEvaluate:
		return true
	}
	return false
}

// ErrBadRequest is wrapped by every ParseRoute error: the body is not a vault
// request that cofferd relays.
var ErrBadRequest = errors.New("host: not a vault request")

// ErrNotRelayed is matched (with ErrBadRequest) by the ParseRoute error for
// a provisioning request: unsigned-identity or install-identity.
// Provisioning goes from a station connected to the vault directly, never
// through cofferd: relayed from any account, install-identity would let a
// user install a bundle signed by a key of their own, and every client
// pinned to the real provisioning key would then refuse the vault.
var ErrNotRelayed = errors.New("host: a provisioning request, which cofferd does not relay")

type notRelayedError struct{ typ protocol.Type }

func (e notRelayedError) Error() string {
	return fmt.Sprintf("host: %s is a provisioning request: cofferd relays only client requests, "+
		"and a vault is provisioned from a station connected to it directly", e.typ)
}

func (e notRelayedError) Is(target error) bool {
	return target == ErrNotRelayed || target == ErrBadRequest
}

// ParseRoute reads the routing fields of one vault request. The envelope is
// decoded strictly (version, a request type, a body), and only the requests
// a client sends are accepted (an allow-list: identity, status,
// user-status, register-start/finish, login-start/finish, session, and the
// realm requests 16-21). The body is decoded only for register-start,
// login-start, user-status and the RealmRequests of types 16-20, whose clear
// user id must be checked against the account's. Other bodies (handle-routed: the finishes, session,
// realm-session) are the vault's to validate.
func ParseRoute(body []byte) (Route, error) {
	if len(body) > protocol.MaxMessageSize {
		return Route{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadRequest, len(body), protocol.MaxMessageSize)
	}
	var env protocol.Envelope
	if err := protocol.Unmarshal(body, &env); err != nil {
		return Route{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	r := Route{Type: env.Type}
	switch env.Type {
	case protocol.TypeIdentity, protocol.TypeStatus, protocol.TypeRegisterFinish,
		protocol.TypeLoginFinish, protocol.TypeSession, protocol.TypeRealmSession:
	case protocol.TypeRegisterStart:
		var m protocol.RegisterStart
		if err := protocol.Unmarshal(env.Body, &m); err != nil {
			return Route{}, fmt.Errorf("%w: register-start: %v", ErrBadRequest, err)
		}
		r.UserID = m.UserID
	case protocol.TypeLoginStart:
		var m protocol.LoginStart
		if err := protocol.Unmarshal(env.Body, &m); err != nil {
			return Route{}, fmt.Errorf("%w: login-start: %v", ErrBadRequest, err)
		}
		r.UserID = m.UserID
	case protocol.TypeUserStatus:
		// One user's attempt count: only the account's own (SPEC.md, "User
		// status"), as for a login start.
		var m protocol.UserStatusRequest
		if err := protocol.Unmarshal(env.Body, &m); err != nil {
			return Route{}, fmt.Errorf("%w: user-status: %v", ErrBadRequest, err)
		}
		r.UserID = m.UserID
	case protocol.TypeRealmProbe, protocol.TypeRealmChallenge, protocol.TypeRealmEvaluate,
		protocol.TypeRealmUnlock, protocol.TypeRealmRegister:
		// REALMS.md 6.1: the outer user_id is the account at this realm,
		// there for cofferd's per-account checks; the realm refuses an inner
		// one that differs.
		var m protocol.RealmRequest
		if err := protocol.Unmarshal(env.Body, &m); err != nil {
			return Route{}, fmt.Errorf("%w: %s: %v", ErrBadRequest, env.Type, err)
		}
		r.UserID = m.UserID
	case protocol.TypeUnsignedIdentity, protocol.TypeInstallIdentity:
		return Route{}, notRelayedError{env.Type}
	case protocol.TypeError:
		return Route{}, fmt.Errorf("%w: an error reply is not a request", ErrBadRequest)
	default:
		return Route{}, fmt.Errorf("%w: %s is not a request cofferd relays", ErrBadRequest, env.Type)
	}
	return r, nil
}

// replyInfo is what cofferd notes about a vault reply, for metrics only: the
// error code of an error reply, and whether a login-start reply carries a
// "locked" receipt. It reads only clear, signed fields and never fails: a
// reply it cannot read is relayed all the same.
type replyInfo struct {
	errCode protocol.Code // 0 unless the reply is an error
	locked  bool
}

func inspectReply(reqType protocol.Type, reply []byte) replyInfo {
	var env protocol.Envelope
	if protocol.Unmarshal(reply, &env) != nil {
		return replyInfo{}
	}
	switch env.Type {
	case protocol.TypeError:
		var e protocol.Error
		if protocol.Unmarshal(env.Body, &e) != nil {
			return replyInfo{errCode: protocol.CodeInternal}
		}
		return replyInfo{errCode: e.Code}
	case protocol.TypeLoginStart:
		if reqType != protocol.TypeLoginStart {
			return replyInfo{}
		}
		var m protocol.LoginStartReply
		if protocol.Unmarshal(env.Body, &m) != nil {
			return replyInfo{}
		}
		var r protocol.Receipt
		if protocol.Unmarshal(m.Receipt.Body, &r) != nil {
			return replyInfo{}
		}
		return replyInfo{locked: r.Kind == protocol.ReceiptLocked}
	}
	return replyInfo{}
}

// codeLabel names a vault error code for metrics, as SPEC.md names it.
func codeLabel(c protocol.Code) string {
	switch c {
	case protocol.CodeMalformed:
		return "malformed"
	case protocol.CodeUnsupportedVersion:
		return "unsupported-version"
	case protocol.CodeUnknownHandle:
		return "unknown-handle"
	case protocol.CodeAuthentication:
		return "authentication"
	case protocol.CodeSequence:
		return "sequence"
	case protocol.CodeExists:
		return "exists"
	case protocol.CodeLimit:
		return "limit"
	case protocol.CodeBusy:
		return "busy"
	case protocol.CodeUnavailable:
		return "unavailable"
	case protocol.CodeTampered:
		return "tampered"
	case protocol.CodeNotProvisioned:
		return "not-provisioned"
	case protocol.CodeBadFrame:
		return "bad-frame"
	case protocol.CodeInternal:
		return "internal"
	}
	return "other"
}
