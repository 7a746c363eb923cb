package host

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

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

// replyInfo is what cofferd notes about a vault reply, for metrics and the
// log: the error code of an error reply, and whether a login-start reply
// carries a "locked" receipt, with that receipt's clear counters. It reads
// only clear, signed fields and never fails: a reply it cannot read is
// relayed all the same.
type replyInfo struct {
	errCode protocol.Code // 0 unless the reply is an error
	locked  bool
	// Of a locked receipt: its limit, the failed attempts since the last
	// success, and how long the record may still be revived (0: erased).
	limit, failedSinceSuccess uint
	revivable                 time.Duration
}

func inspectReply(reqType protocol.Type, reply []byte) replyInfo {
	// Most replies say nothing worth counting: skip their strict decode
	// (four passes over the reply, and as many over its body and receipt)
	// when the type alone tells, or, for a login start's, when its bytes
	// cannot hold a locked receipt.
	if t, ok := peekReplyType(reply); ok && t != protocol.TypeError {
		if t != protocol.TypeLoginStart || reqType != protocol.TypeLoginStart || !mayHoldLockedReceipt(reply) {
			return replyInfo{}
		}
	}
	return inspectReplyStrict(reqType, reply)
}

// lockedReceiptHead is how a locked receipt's bytes start inside a reply
// in its one encoding: a byte string of ReceiptBodySize bytes (59 01 2c),
// then the receipt, a map of fewer than 24 entries (a0+n: the struct has
// 13 fields, and a strict decode re-encodes it) whose smallest key, 1, the
// kind, comes first (01), with the value ReceiptLocked (03). Nil if the
// constants ever stop fitting this shape: every login-start reply is then
// decoded.
var lockedReceiptHead = func() []byte {
	if protocol.ReceiptBodySize < 256 || protocol.ReceiptBodySize > 0xffff || protocol.ReceiptLocked >= 24 {
		return nil
	}
	return []byte{0x59, byte(protocol.ReceiptBodySize >> 8), byte(protocol.ReceiptBodySize & 0xff)}
}()

// mayHoldLockedReceipt reports whether b holds lockedReceiptHead followed
// by a short map header, 01 and ReceiptLocked: false only when a strict
// decode cannot find a locked receipt in b.
func mayHoldLockedReceipt(b []byte) bool {
	if lockedReceiptHead == nil {
		return true
	}
	for {
		i := bytes.Index(b, lockedReceiptHead)
		if i < 0 {
			return false
		}
		b = b[i+len(lockedReceiptHead):]
		if len(b) >= 3 && b[0] >= 0xa0 && b[0] <= 0xb7 && b[1] == 0x01 && b[2] == byte(protocol.ReceiptLocked) {
			return true
		}
	}
}

// inspectReplyStrict is inspectReply without its shortcut: the reply
// decoded strictly, whatever its type.
func inspectReplyStrict(reqType protocol.Type, reply []byte) replyInfo {
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
		if r.Kind != protocol.ReceiptLocked {
			return replyInfo{}
		}
		return replyInfo{locked: true, limit: r.Limit, failedSinceSuccess: r.FailedSinceSuccess,
			revivable: time.Duration(min(uint64(r.RevivableMillis), uint64(math.MaxInt64/int64(time.Millisecond)))) * time.Millisecond}
	}
	return replyInfo{}
}

// peekReplyType reads an envelope's type from its first five bytes, where
// its one encoding (SPEC.md, "Conventions": core deterministic CBOR) puts
// it: a map of three entries {1: version, 2: type, 3: body}, so a3 01 01
// 02 T for a type below 24. ok is false for anything else, which only a
// strict decode can judge. For any reply that decodes strictly, T is its
// type.
func peekReplyType(b []byte) (t protocol.Type, ok bool) {
	if len(b) < 5 || b[0] != 0xa3 || b[1] != 0x01 || b[2] != protocol.Version || b[3] != 0x02 || b[4] >= 24 {
		return 0, false
	}
	return protocol.Type(b[4]), true
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
