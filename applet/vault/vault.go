package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// Options configure a vault. Zero values take the defaults shown.
type Options struct {
	// Create makes New generate and commit a fresh identity when the store
	// has none. Without it New refuses an empty store, so that a wiped
	// device is noticed rather than silently given new keys.
	Create bool

	Rand io.Reader        // crypto/rand.Reader
	Now  func() time.Time // time.Now; only durations matter
	Log  *slog.Logger     // slog.Default(); never given secrets

	MaxLimit uint // highest attempt limit a client may choose: protocol.DefaultLimit
	Insecure bool // software vault or emulator: set in the identity bundle
	// FirmwareHash is the measurement of what runs (on the device, what the
	// boot chain measured; for the software vault, its binary's SHA-256):
	// in the identity bundle and signed in every status. Zero if unset.
	FirmwareHash []byte
	Name         string // a label in the identity bundle

	LoginTTL        time.Duration // KE2 → KE3: 30 s
	SessionTTL      time.Duration // idle session: 2 min
	SessionLifetime time.Duration // a session however busy: 15 min
	RegistrationTTL time.Duration // start → finish: 2 min

	MaxPendingLogins        int // 4096
	MaxSessions             int // 1024
	MaxPendingRegistrations int // 1024

	// MaxConcurrent bounds requests doing CPU work at once (waiting for a
	// commit does not count): 2 × GOMAXPROCS.
	MaxConcurrent int

	// AnchorWrites reports the monotonic anchor's write counter for status.
	AnchorWrites func() uint64
	// Occupancy reports the records the store holds and its estimate of
	// how many it holds when full, for status (applet/startup sets it from
	// the record store).
	Occupancy func() (records, capacity uint64)
}

func (o *Options) setDefaults() error {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxLimit == 0 {
		o.MaxLimit = protocol.DefaultLimit
	}
	if o.MaxLimit > protocol.MaxLimitCeiling {
		return fmt.Errorf("vault: maximum attempt limit %d exceeds %d", o.MaxLimit, protocol.MaxLimitCeiling)
	}
	if o.FirmwareHash == nil {
		o.FirmwareHash = make([]byte, sha256.Size)
	}
	if len(o.FirmwareHash) != sha256.Size {
		return errors.New("vault: firmware hash must be a SHA-256")
	}
	setDuration(&o.LoginTTL, 30*time.Second)
	setDuration(&o.SessionTTL, 2*time.Minute)
	setDuration(&o.SessionLifetime, 15*time.Minute)
	setDuration(&o.RegistrationTTL, 2*time.Minute)
	setInt(&o.MaxPendingLogins, 4096)
	setInt(&o.MaxSessions, 1024)
	setInt(&o.MaxPendingRegistrations, 1024)
	setInt(&o.MaxConcurrent, 2*runtime.GOMAXPROCS(0))
	return nil
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n <= 0 {
		*n = def
	}
}

// Vault serves the protocol for one store. Its methods are safe for
// concurrent use; concurrency is what lets the store batch commits.
type Vault struct {
	opts   Options
	store  Store
	id     *identity
	bundle atomic.Pointer[protocol.SignedIdentity]

	// userLocks serialise the read-modify-write of one user's record
	// (striped: two users may share a lock, which is only slower).
	userLocks [256]sync.Mutex

	logins        *table[*pendingLogin]
	finals        finalLogins   // when each final login expires, for locked receipts
	watches       recordWatches // pending registrations' view of writes to their user's record
	sessions      *table[*session]
	registrations *table[*pendingRegistration]

	realm *realms // the realm record kind's RAM state (realm.go)

	admit admission

	// onEvaluate, set by tests, sees every login whose KE2 evaluates a
	// real record's key, just before the evaluation.
	onEvaluate func(*pendingLogin)
	// onRealmEvaluate, set by tests, sees every realm evaluation just
	// before its share is read.
	onRealmEvaluate func(userID []byte)
}

// New opens the vault kept in st. All pending logins, sessions and
// registrations live in RAM only, so a new Vault starts with none: this is
// how a reboot forgets final-attempt secrets.
func New(ctx context.Context, st Store, opts Options) (*Vault, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	id, err := loadIdentity(ctx, st, opts.Rand, opts.Create)
	if err != nil {
		return nil, err
	}
	v := &Vault{
		opts:          opts,
		store:         st,
		id:            id,
		logins:        newTable[*pendingLogin](opts.MaxPendingLogins, opts.LoginTTL),
		sessions:      newTable[*session](opts.MaxSessions, opts.SessionTTL),
		registrations: newTable[*pendingRegistration](opts.MaxPendingRegistrations, opts.RegistrationTTL),
		admit:         make(admission, opts.MaxConcurrent),
	}
	v.realm = newRealms(&v.opts)
	if err := v.loadBundle(); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Vault) lockUser(userID []byte) *sync.Mutex {
	sum := sha256.Sum256(userID)
	m := &v.userLocks[sum[0]]
	m.Lock()
	return m
}

// Expire forgets every pending login, session and registration older than
// its lifetime, wiping their secrets. Call it periodically; the tables also
// expire lazily when looked up or full.
func (v *Vault) Expire() {
	now := v.opts.Now()
	v.logins.expire(now)
	v.finals.sweep(now)
	v.sessions.expire(now)
	v.registrations.expire(now)
	v.realm.expire(now)
}

// Close wipes everything the vault holds in RAM.
func (v *Vault) Close() {
	v.logins.clear()
	v.sessions.clear()
	v.registrations.clear()
	v.realm.clear()
}

// Handle answers one request (an encoded protocol.Envelope) with one reply.
// It never panics on bad input; a bug that panics is turned into an internal
// error reply so that the vault keeps serving.
func (v *Vault) Handle(ctx context.Context, request []byte) (reply []byte) {
	defer func() {
		if r := recover(); r != nil {
			v.opts.Log.Error("vault: internal error", "panic", fmt.Sprint(r))
			reply = protocol.EncodeError(protocol.Errorf(protocol.CodeInternal, "internal error"))
		}
	}()
	return v.handle(ctx, request)
}

func (v *Vault) handle(ctx context.Context, request []byte) []byte {
	ctx, slot, err := v.admit.enter(ctx)
	if err != nil {
		return protocol.EncodeError(protocol.Errorf(protocol.CodeBusy, "request abandoned while queued"))
	}
	defer slot.leave()
	var env protocol.Envelope
	if err := protocol.Unmarshal(request, &env); err != nil {
		return protocol.EncodeError(err)
	}
	body, err := v.dispatch(ctx, env.Type, env.Body)
	if err != nil {
		return protocol.EncodeError(err)
	}
	out, err := protocol.Encode(env.Type, body)
	if err != nil {
		v.opts.Log.Error("vault: encoding reply", "type", env.Type.String(), "err", err)
		return protocol.EncodeError(protocol.Errorf(protocol.CodeInternal, "internal error"))
	}
	return out
}

func (v *Vault) dispatch(ctx context.Context, t protocol.Type, body []byte) (protocol.Message, error) {
	switch t {
	case protocol.TypeIdentity:
		var m protocol.Empty
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		b := v.bundle.Load()
		if b == nil {
			return nil, protocol.Errorf(protocol.CodeNotProvisioned, "no signed identity bundle installed")
		}
		return b, nil
	case protocol.TypeStatus:
		var m protocol.StatusRequest
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.status(ctx, m.Nonce)
	case protocol.TypeUserStatus:
		var m protocol.UserStatusRequest
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.userStatus(ctx, &m)
	case protocol.TypeUnsignedIdentity:
		var m protocol.Empty
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.Identity(), nil
	case protocol.TypeInstallIdentity:
		var m protocol.SignedIdentity
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		if err := v.InstallIdentity(ctx, m); err != nil {
			if errors.Is(err, errNotThisIdentity) {
				return nil, protocol.Errorf(protocol.CodeMalformed, "the signed identity is not this vault's identity")
			}
			return nil, storeError(err)
		}
		return &protocol.Empty{}, nil
	case protocol.TypeRegisterStart:
		var m protocol.RegisterStart
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.registerStart(&m)
	case protocol.TypeRegisterFinish:
		var m protocol.RegisterFinish
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.registerFinish(ctx, &m)
	case protocol.TypeLoginStart:
		var m protocol.LoginStart
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.loginStart(ctx, &m)
	case protocol.TypeLoginFinish:
		var m protocol.LoginFinish
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.loginFinish(ctx, &m)
	case protocol.TypeSession:
		var m protocol.Session
		if err := protocol.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return v.sessionCommand(ctx, &m)
	case protocol.TypeRealmProbe, protocol.TypeRealmChallenge, protocol.TypeRealmEvaluate, protocol.TypeRealmUnlock,
		protocol.TypeRealmRegister, protocol.TypeRealmSession:
		return v.dispatchRealm(ctx, t, body)
	}
	return nil, protocol.Errorf(protocol.CodeMalformed, "%s is not a request", t)
}

// status signs the vault's state together with the client's nonce, so that
// the reply answers this request only.
func (v *Vault) status(ctx context.Context, nonce []byte) (*protocol.StatusReply, error) {
	st := &protocol.Status{
		Version:       protocol.Version,
		Nonce:         nonce,
		Insecure:      v.opts.Insecure,
		PendingLogins: uint(v.logins.len()),
		OpenSessions:  uint(v.sessions.len()),
		// What the boot chain measured (Options.FirmwareHash), never
		// anything the host sends: the client compares it with the
		// bundle's at every contact.
		FirmwareHash: v.opts.FirmwareHash,
	}
	seq, err := v.commit(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	st.StoreSequence = seq
	if v.opts.AnchorWrites != nil {
		st.AnchorWrites = v.opts.AnchorWrites()
	}
	if v.opts.Occupancy != nil {
		st.Records, st.RecordCapacity = v.opts.Occupancy()
	}
	r, err := protocol.SignStatus(v.id.signing, st)
	return &r, err
}

// storeError turns a store failure into the reply the vault fails closed
// with. The underlying error is logged, not sent: it may describe the
// device.
func storeError(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	var t interface{ Tampered() bool }
	if errors.Is(err, ErrTampered) || (errors.As(err, &t) && t.Tampered()) {
		return protocol.Errorf(protocol.CodeTampered, "service refused")
	}
	return protocol.Errorf(protocol.CodeUnavailable, "storage failed; nothing was granted")
}
