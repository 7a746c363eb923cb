package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// eventInterval is how often at most one kind of event is logged per
// account: repeats in between are counted and reported on the next line,
// so that an account hammering cofferd cannot flood its log.
const eventInterval = time.Minute

// eventLog writes the lines of the events an operator must see beside the
// metrics: a request refused by the login rate limit, and a login start
// that found the account locked. Each line says who (the client's address,
// the account, a hash of its user id), what and for how long; never a
// token, a body or anything from one but the signed receipt's clear
// counters.
type eventLog struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	last map[eventKey]*eventState
}

type eventKey struct{ event, account string }

type eventState struct {
	logged  time.Time
	repeats int // events since the last line, the one about to be logged included
}

func newEventLog(log *slog.Logger, now func() time.Time) *eventLog {
	return &eventLog{log: log, now: now, last: map[eventKey]*eventState{}}
}

// due counts one event and reports whether it is to be logged now, with
// the number of events the line covers.
func (e *eventLog) due(event, account string) (bool, int) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	k := eventKey{event, account}
	st := e.last[k]
	if st == nil {
		st = &eventState{}
		e.last[k] = st
	}
	st.repeats++
	if !st.logged.IsZero() && now.Sub(st.logged) < eventInterval {
		return false, 0
	}
	n := st.repeats
	st.logged, st.repeats = now, 0
	if len(e.last) > 4096 { // accounts come and go: forget quiet ones
		for k, v := range e.last {
			if v.repeats == 0 && now.Sub(v.logged) >= eventInterval {
				delete(e.last, k)
			}
		}
	}
	return true, n
}

// userIDHash names a user id in logs: the first 8 bytes of its SHA-256,
// in hex (`printf %s USER_ID_HEX | xxd -r -p | sha256sum | cut -c1-16`).
func userIDHash(id []byte) string {
	sum := sha256.Sum256(id)
	return hex.EncodeToString(sum[:8])
}

// rateLimited logs a request the account's login rate limit refused.
func (e *eventLog) rateLimited(r *http.Request, a *Account, typ protocol.Type, wait time.Duration, rate float64, burst int) {
	ok, n := e.due("rate-limited", a.Name)
	if !ok {
		return
	}
	e.log.LogAttrs(r.Context(), slog.LevelInfo, "request rate-limited",
		slog.String("client", r.RemoteAddr), slog.String("account", a.Name), slog.String("user_id_hash", userIDHash(a.UserID)),
		slog.String("limited", typ.String()), slog.Int64("retry_after_seconds", retrySeconds(wait)),
		slog.Float64("rate_per_minute", rate*60), slog.Int("burst", burst), slog.Int("repeats", n))
}

// locked logs a login start whose receipt says the account is locked:
// for ever (the key erased) or for now (the login that reached the limit
// may still finish, for revivable).
func (e *eventLog) locked(ctx context.Context, r *http.Request, a *Account, device string, info replyInfo) {
	ok, n := e.due("locked", a.Name)
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("client", r.RemoteAddr), slog.String("account", a.Name),
		slog.String("user_id_hash", userIDHash(a.UserID)), slog.String("device", device)}
	if info.revivable > 0 {
		attrs = append(attrs, slog.String("lock", "for now"), slog.Duration("revivable_for", info.revivable))
	} else {
		attrs = append(attrs, slog.String("lock", "erased"))
	}
	attrs = append(attrs, slog.Uint64("limit", uint64(info.limit)), slog.Uint64("failed_since_success", uint64(info.failedSinceSuccess)),
		slog.Int("repeats", n))
	e.log.LogAttrs(ctx, slog.LevelWarn, "account locked", attrs...)
}
