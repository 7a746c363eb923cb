package vault

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/protocol"
)

// The executable model of the counting rules (SPEC.md, "Counting").
//
// It enumerates every interleaving of the events that the operator and the
// user can cause — a KE1 by the user (right password) or by the operator (a
// guess), a KE3 delivered with its reply, a KE3 delivered and its reply
// dropped, a KE3 withheld for ever, the user's confirmation, the expiry of
// everything pending or of pending logins only, and a reboot — for small
// limits and up to four logins in flight, and plays each against the real
// vault. After every event it
// checks the promise:
//
//	between two confirmed successes, the evaluations of the record's key by
//	logins that have not ended in a valid KE3 number at most limit,
//
// and that none of the record's running totals ever goes backwards.
//
// Interleavings are explored depth first. Two interleavings that reach the
// same abstract state (the committed record, what each login has done and
// whether its evaluation falls in the current window) have the same futures,
// so each abstract state is expanded once. To try each event from a state,
// the vault (its RAM tables) and its store are cloned, so nothing is
// replayed. The store there is a synchronous map (events are one at a
// time, so group commit has nothing to do); a sample of the explored
// interleavings is then replayed from scratch on the real record store.

type modelRole uint8

const (
	roleUser     modelRole = iota // knows the password
	roleOperator                  // guesses
)

type modelPhase uint8

const (
	phaseIdle      modelPhase = iota // no KE1 yet
	phasePending                     // KE2 received, KE3 not sent
	phaseReleased                    // the user's KE3 released the key; not confirmed
	phaseConfirmed                   // the user confirmed the release
	phaseEnded                       // nothing more can happen to this login
)

type modelEvent struct {
	kind  string // "ke1", "ke3", "ke3-drop-reply", "confirm", "expire", "reboot"
	login int
}

func (e modelEvent) String() string {
	if e.login < 0 {
		return e.kind
	}
	return fmt.Sprintf("%s#%d", e.kind, e.login)
}

type modelBounds struct {
	limit    uint
	roles    []modelRole // one actor each: at most this many logins in flight
	ke1s     int         // KE1s in all: an actor whose login ended may start another
	reboots  int
	expiries int // of everything pending: logins and sessions
	// loginExpiries expire pending logins only (sessions live on), so
	// that a final login can die while a released session still waits.
	loginExpiries int
}

// modelLogin is one login as the model and its test client see it. The
// client finishes its side as soon as KE2 arrives, so that the login holds
// only bytes and can be copied with the run.
type modelLogin struct {
	role        modelRole
	phase       modelPhase
	valid       bool // its KE3 was verified by the vault (the password was right)
	evalWindow  int  // the window its evaluation fell in, or -1
	requestHash string
	start       *protocol.LoginStartReply
	receipt     *protocol.Receipt // the attempt or locked receipt
	ke3         []byte
	opened      bool // the client's envelope opened: it sends the real KE3
	sessionKey  []byte
	releaseSeal []byte
}

// modelWorld is the vault and its store under one run.
type modelWorld struct {
	store Store
	clock *fakeClock
	opts  Options
	v     *Vault
}

// modelRun is one vault and the logins played against it so far.
type modelRun struct {
	t             testing.TB
	b             modelBounds
	w             *modelWorld
	logins        []modelLogin
	window        int // confirmed successes so far: the index of the current window
	carried       int // evaluations without a valid KE3 in this window by logins that ended
	ke1s          int
	reboots       int
	expiries      int
	loginExpiries int
	last          *record
	trace         []modelEvent
}

const modelUser = "model"

func (r *modelRun) hook() {
	r.w.v.onEvaluate = func(l *pendingLogin) {
		for i := range r.logins {
			if m := &r.logins[i]; m.requestHash == string(l.requestHash) {
				m.evalWindow = r.window
				return
			}
		}
		r.t.Fatalf("%v: an evaluation for a login the model did not start", r.trace)
	}
}

func (r *modelRun) boot() {
	v, err := New(context.Background(), r.w.store, r.w.opts)
	if err != nil {
		r.t.Fatalf("%v: boot: %v", r.trace, err)
	}
	r.w.v = v
	r.hook()
}

func (r *modelRun) committed() *record {
	b, found, err := r.w.store.Get(userKey([]byte(modelUser)))
	if err != nil || !found {
		r.t.Fatalf("%v: the record: found %v, %v", r.trace, found, err)
	}
	rec, err := parseRecord(b)
	if err != nil {
		r.t.Fatalf("%v: %v", r.trace, err)
	}
	return rec
}

func (r *modelRun) events() []modelEvent {
	var out []modelEvent
	idleSeen := map[modelRole]bool{}
	for i, l := range r.logins {
		switch l.phase {
		case phaseIdle, phaseEnded, phaseConfirmed:
			// Actors with nothing in flight are interchangeable: the first
			// of each role starts a login.
			if !idleSeen[l.role] && r.ke1s < r.b.ke1s {
				idleSeen[l.role] = true
				out = append(out, modelEvent{"ke1", i})
			}
		case phasePending:
			out = append(out, modelEvent{"ke3", i})
			if l.opened {
				out = append(out, modelEvent{"ke3-drop-reply", i})
			}
		case phaseReleased:
			out = append(out, modelEvent{"confirm", i})
		}
	}
	if r.expiries < r.b.expiries {
		out = append(out, modelEvent{"expire", -1})
	}
	if r.loginExpiries < r.b.loginExpiries {
		out = append(out, modelEvent{"expire-logins", -1})
	}
	if r.reboots < r.b.reboots {
		out = append(out, modelEvent{"reboot", -1})
	}
	return out
}

func (r *modelRun) call(t protocol.Type, req, reply protocol.Message) error {
	b, err := protocol.Encode(t, req)
	if err != nil {
		r.t.Fatal(err)
	}
	return protocol.Decode(r.w.v.handle(context.Background(), b), t, reply)
}

func (r *modelRun) apply(e modelEvent) {
	r.trace = append(r.trace, e)
	switch e.kind {
	case "expire":
		r.expiries++
		r.w.clock.Advance(r.w.opts.LoginTTL + r.w.opts.SessionTTL + time.Second)
		r.w.v.Expire()
		r.forgetRAM()
	case "expire-logins":
		r.loginExpiries++
		r.w.clock.Advance(r.w.opts.LoginTTL + time.Second) // less than SessionTTL
		r.w.v.Expire()
		for i := range r.logins {
			if l := &r.logins[i]; l.phase == phasePending {
				l.phase = phaseEnded
			}
		}
	case "reboot":
		r.reboots++
		r.w.v.Close()
		r.boot()
		r.forgetRAM()
	case "ke1":
		if old := r.logins[e.login]; old.evalWindow == r.window && !old.valid {
			r.carried++ // the actor's previous login stays a guess in this window
		}
		r.logins[e.login] = modelLogin{role: r.logins[e.login].role, evalWindow: -1}
		r.ke1s++
		r.ke1(&r.logins[e.login])
	case "ke3":
		r.ke3(&r.logins[e.login], true)
	case "ke3-drop-reply":
		r.ke3(&r.logins[e.login], false)
	case "confirm":
		r.confirm(&r.logins[e.login])
	default:
		r.t.Fatalf("unknown event %v", e)
	}
	r.check()
}

// forgetRAM: whatever the vault held in RAM is gone; pending logins and
// open sessions can do nothing more.
func (r *modelRun) forgetRAM() {
	for i := range r.logins {
		if l := &r.logins[i]; l.phase == phasePending || l.phase == phaseReleased {
			l.phase = phaseEnded
		}
	}
}

func (r *modelRun) ke1(l *modelLogin) {
	password := "right"
	if l.role == roleOperator {
		password = "guess"
	}
	cl, ke1, err := opaque.NewClientLogin(rand.Reader, []byte(password))
	if err != nil {
		r.t.Fatal(err)
	}
	l.requestHash = string(protocol.RequestHash(ke1))
	var start protocol.LoginStartReply
	if err := r.call(protocol.TypeLoginStart, &protocol.LoginStart{UserID: []byte(modelUser), KE1: ke1}, &start); err != nil {
		r.t.Fatalf("%v: KE1: %v", r.trace, err)
	}
	l.start, l.phase = &start, phasePending
	if l.receipt, err = start.Receipt.Verify(r.w.v.Identity().SigningKey); err != nil {
		r.t.Fatalf("%v: attempt receipt: %v", r.trace, err)
	}
	ke3, sessionKey, _, ferr := cl.Finish(start.KE2, opaque.Identities{Client: []byte(modelUser)}, opaqueContext, nil)
	l.opened = ferr == nil // the user's envelope opens on the real record only
	if !l.opened {
		ke3 = make([]byte, protocol.KE3Size) // a random KE3, as clients send when it does not
		rand.Read(ke3)
	}
	l.ke3, l.sessionKey = ke3, sessionKey
}

func (r *modelRun) ke3(l *modelLogin, replyArrives bool) {
	var done protocol.SealedReply
	err := r.call(protocol.TypeLoginFinish, &protocol.LoginFinish{Handle: l.start.Handle, KE3: l.ke3}, &done)
	l.phase = phaseEnded
	switch {
	case err == nil:
		if !l.opened {
			r.t.Fatalf("%v: the vault released the key to a KE3 that proved nothing", r.trace)
		}
		l.valid = true
		r.checkRelease(l, done.Sealed)
		if replyArrives {
			l.phase, l.releaseSeal = phaseReleased, done.Sealed
		}
	case errors.Is(err, &protocol.Error{Code: protocol.CodeLocked}):
		if !l.opened {
			r.t.Fatalf("%v: a KE3 that proved nothing was told the password was right", r.trace)
		}
		l.valid = true // the password was proved; the key stayed put
	case errors.Is(err, &protocol.Error{Code: protocol.CodeAuthentication}):
		if l.opened {
			r.t.Fatalf("%v: the user's right KE3 failed to authenticate", r.trace)
		}
	default:
		// The model loses state only through expire and reboot, which end
		// pending logins before their KE3: nothing else may refuse one.
		r.t.Fatalf("%v: KE3: %v", r.trace, err)
	}
}

// checkRelease opens the release and checks that it tells the user of every
// guess made since the last confirmed success: the vault may report more
// (it keeps counting what came after the confirmed login's KE1), never less.
func (r *modelRun) checkRelease(l *modelLogin, sealed []byte) {
	keys, err := protocol.DeriveSessionKeys(l.sessionKey, l.start.Handle)
	if err != nil {
		r.t.Fatal(err)
	}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&keys.ToClient, 0, l.start.Handle, sealed, &inner); err != nil {
		r.t.Fatalf("%v: the release does not open: %v", r.trace, err)
	}
	released, err := inner.Receipt.Verify(r.w.v.Identity().SigningKey)
	if err != nil {
		r.t.Fatalf("%v: release receipt: %v", r.trace, err)
	}
	guesses := r.carried
	for i := range r.logins {
		if m := &r.logins[i]; m != l && m.evalWindow == r.window && !m.valid {
			guesses++
		}
	}
	if int(released.FailedSinceSuccess) < guesses {
		r.t.Fatalf("%v: the release reports %d failed attempts, %d guesses were made since the last confirmed success",
			r.trace, released.FailedSinceSuccess, guesses)
	}
}

func (r *modelRun) confirm(l *modelLogin) {
	keys, err := protocol.DeriveSessionKeys(l.sessionKey, l.start.Handle)
	if err != nil {
		r.t.Fatal(err)
	}
	var inner protocol.SessionReplyInner
	if err := protocol.OpenMessage(&keys.ToClient, 0, l.start.Handle, l.releaseSeal, &inner); err != nil {
		r.t.Fatalf("%v: the release does not open: %v", r.trace, err)
	}
	sealed, err := protocol.SealMessage(&keys.ToVault, 1, l.start.Handle,
		&protocol.SessionCommand{Command: protocol.CommandClose, Confirm: protocol.ReceiptHash(inner.Receipt)})
	if err != nil {
		r.t.Fatal(err)
	}
	err = r.call(protocol.TypeSession, &protocol.Session{Handle: l.start.Handle, Seq: 1, Sealed: sealed}, &protocol.SessionReply{})
	l.phase = phaseEnded
	switch {
	case err == nil:
		l.phase = phaseConfirmed
		r.window++
		r.carried = 0
	case errors.Is(err, &protocol.Error{Code: protocol.CodeLocked}):
		// Guesses locked the record after the release: nothing to confirm.
	default:
		r.t.Fatalf("%v: confirm: %v", r.trace, err)
	}
}

// check tests the promise in the current window, and that the record's
// totals never go backwards.
func (r *modelRun) check() {
	guesses := r.carried
	for _, l := range r.logins {
		if l.evalWindow == r.window && !l.valid {
			guesses++
		}
	}
	if guesses > int(r.b.limit) {
		r.t.Fatalf("%v: %d evaluations without a valid KE3 since the last confirmed success, limit %d", r.trace, guesses, r.b.limit)
	}
	cur := r.committed()
	if cur.Attempts < r.last.Attempts || cur.Watermark < r.last.Watermark || cur.Successes < r.last.Successes {
		r.t.Fatalf("%v: a total went backwards: %+v after %+v", r.trace, cur, r.last)
	}
	if cur.Successes != uint64(r.window) {
		r.t.Fatalf("%v: the record counts %d successes, the user confirmed %d", r.trace, cur.Successes, r.window)
	}
	r.last = cur
}

// key is the abstract state: what decides the futures of this run.
func (r *modelRun) key() string {
	var b strings.Builder
	c := r.last
	fmt.Fprintf(&b, "%d/%d/%d/%d r%d e%d/%d k%d c%d |", c.State, c.Watermark, c.Attempts, c.Successes,
		r.reboots, r.expiries, r.loginExpiries, r.ke1s, r.carried)
	for _, l := range r.logins {
		fmt.Fprintf(&b, " %d%d%t%t%t", l.role, l.phase, l.valid, l.evalWindow == r.window, l.opened)
		if l.receipt != nil && (l.phase == phasePending || l.phase == phaseReleased) {
			// Its place in the count, and whether it is the final login.
			fmt.Fprintf(&b, "@%d/%d/%d", l.receipt.Kind, l.receipt.AttemptsTotal, l.receipt.TriesLeft)
		}
	}
	return b.String()
}

// clone copies the run, its vault's RAM and its store, so that another
// event can be tried from the same state.
func (r *modelRun) clone() *modelRun {
	c := *r
	c.logins = append([]modelLogin(nil), r.logins...)
	c.trace = append([]modelEvent(nil), r.trace...)
	st := r.w.store.(*modelStore).clone()
	clock := &fakeClock{now: r.w.clock.Now()}
	opts := r.w.opts
	opts.Now = clock.Now
	c.w = &modelWorld{store: st, clock: clock, opts: opts, v: r.w.v.cloneForModel(st, opts)}
	c.hook()
	return &c
}

// modelStore is a synchronous store in a map: the model plays one event at
// a time, so every commit finds only its own changes.
type modelStore struct {
	data map[string][]byte
	seq  uint64
}

func (s *modelStore) Get(id []byte) ([]byte, bool, error) {
	v, ok := s.data[string(id)]
	return append([]byte(nil), v...), ok, nil
}

func (s *modelStore) Put(id, rec []byte) error {
	s.data[string(id)] = append([]byte(nil), rec...)
	return nil
}

func (s *modelStore) Delete(id []byte) error { delete(s.data, string(id)); return nil }

func (s *modelStore) Shred() {}

func (s *modelStore) Commit(context.Context) (uint64, error) {
	s.seq++
	return s.seq, nil
}

func (s *modelStore) clone() *modelStore { return &modelStore{data: maps.Clone(s.data), seq: s.seq} }

// cloneForModel copies the vault's RAM state onto st: what the model needs
// to try two events from one state. The identity is shared (read only).
func (v *Vault) cloneForModel(st Store, opts Options) *Vault {
	c := &Vault{
		opts:          opts,
		store:         st,
		id:            v.id,
		logins:        newTable[*pendingLogin](opts.MaxPendingLogins, opts.LoginTTL),
		sessions:      newTable[*session](opts.MaxSessions, opts.SessionTTL),
		registrations: newTable[*pendingRegistration](opts.MaxPendingRegistrations, opts.RegistrationTTL),
		admit:         make(admission, opts.MaxConcurrent),
	}
	c.realm = v.realm.cloneForModel(&c.opts) // realm_model_test.go
	c.bundle.Store(v.bundle.Load())
	copies := map[*pendingLogin]*pendingLogin{}
	v.logins.mu.Lock()
	for h, e := range v.logins.entries {
		l := *e.value
		if l.rec != nil {
			l.rec = l.rec.clone()
		}
		if l.state != nil {
			l.state = l.state.Clone()
		}
		copies[e.value] = &l
		c.logins.entries[h] = tableEntry[*pendingLogin]{value: &l, expires: e.expires}
	}
	v.logins.mu.Unlock()
	v.sessions.mu.Lock()
	for h, e := range v.sessions.entries {
		s := e.value
		s.mu.Lock()
		n := &session{userID: s.userID, generation: s.generation, keys: s.keys, next: s.next, attempt: s.attempt,
			releaseHash: s.releaseHash, confirmed: s.confirmed, ends: s.ends, closed: s.closed}
		s.mu.Unlock()
		c.sessions.entries[h] = tableEntry[*session]{value: n, expires: e.expires}
	}
	v.sessions.mu.Unlock()
	v.finals.mu.Lock()
	for u, f := range v.finals.until {
		if l, ok := copies[f.login]; ok {
			c.finals.set(l, f.expires)
		} else {
			c.finals.set(&pendingLogin{userID: []byte(u)}, f.expires) // a login already taken
		}
	}
	v.finals.mu.Unlock()
	return c
}

type modelStats struct{ states, edges int }

// newModelWorld registers the model's user on a fresh vault over st.
func newModelWorld(t testing.TB, st Store, limit uint) *modelWorld {
	clock := newFakeClock()
	opts := Options{Create: true, Now: clock.Now, LoginTTL: 30 * time.Second, SessionTTL: time.Minute}
	v, err := New(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.setDefaults()
	c := &testclient.Client{Identity: v.Identity(), UserID: []byte(modelUser),
		RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return v.handle(ctx, req), nil }}
	register(t, c, "right", limit)
	return &modelWorld{store: st, clock: clock, opts: opts, v: v}
}

func newModelRun(t testing.TB, b modelBounds, w *modelWorld) *modelRun {
	r := &modelRun{t: t, b: b, w: w}
	for _, role := range b.roles {
		r.logins = append(r.logins, modelLogin{role: role, evalWindow: -1})
	}
	r.hook()
	r.last = r.committed()
	return r
}

// exploreModel walks every interleaving within b and returns the paths to
// the states it found, for the replay on the real store.
func exploreModel(t *testing.T, b modelBounds) (modelStats, [][]modelEvent) {
	root := newModelRun(t, b, newModelWorld(t, &modelStore{data: map[string][]byte{}}, b.limit))
	seen := map[string]bool{}
	var (
		st    modelStats
		paths [][]modelEvent
	)
	var visit func(r *modelRun)
	visit = func(r *modelRun) {
		k := r.key()
		if seen[k] {
			return
		}
		seen[k] = true
		st.states++
		events := r.events()
		if len(events) == 0 {
			paths = append(paths, r.trace)
		}
		for _, e := range events {
			next := r.clone()
			next.apply(e)
			st.edges++
			visit(next)
		}
	}
	visit(root)
	return st, paths
}

// replayOnRecordStore plays path from scratch on the real record store,
// with the same checks.
func replayOnRecordStore(t *testing.T, b modelBounds, path []modelEvent) {
	s := freshRecordStore(t, 7)
	defer s.Close()
	r := newModelRun(t, b, newModelWorld(t, s, b.limit))
	for _, e := range path {
		r.apply(e)
	}
}

// TestCountingModel enumerates the interleavings for every limit up to 3
// and every mix of user and operator actors up to 4 logins in flight, with
// limit + 2 KE1s in all, a reboot and an expiry, and replays a sample of
// them on the real record store; -short (the 32-bit ARM run) explores a
// smaller space.
func TestCountingModel(t *testing.T) {
	maxLimit, maxLogins, extraKE1s, replays := uint(3), 4, 2, 20
	if testing.Short() {
		maxLimit, maxLogins, extraKE1s, replays = 2, 2, 2, 3
	}
	for limit := uint(1); limit <= maxLimit; limit++ {
		for n := 1; n <= maxLogins; n++ {
			for users := 0; users <= n; users++ {
				roles := make([]modelRole, n)
				for i := users; i < n; i++ {
					roles[i] = roleOperator
				}
				b := modelBounds{limit: limit, roles: roles, ke1s: int(limit) + extraKE1s, reboots: 1, expiries: 1, loginExpiries: 1}
				name := fmt.Sprintf("limit%d/users%d/operators%d", limit, users, n-users)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					rng := mrand.New(mrand.NewPCG(uint64(limit), uint64(n*8+users)))
					st, paths := exploreModel(t, b)
					for i := 0; i < replays && len(paths) > 0; i++ {
						replayOnRecordStore(t, b, paths[rng.IntN(len(paths))])
					}
					t.Logf("%d abstract states, %d transitions, %d complete interleavings", st.states, st.edges, len(paths))
				})
			}
		}
	}
}

// freshRecordStore formats an in-memory device under an anchor seeded with
// seed: where a model's paths are replayed on the real record store.
func freshRecordStore(t *testing.T, seed byte) *store.Store {
	t.Helper()
	anchor, _ := storetest.NewMemAnchor([32]byte{seed})
	dev := storetest.NewMemDevice(4096)
	if err := store.Format(dev, anchor, store.Options{}); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(dev, anchor, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
