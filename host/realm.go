package host

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/host/state"
)

// A realm's accounts, devices and hosts live in Config.Store, which every
// host of the realm shares. A request is authenticated by the host that
// receives it, its account placed on a device if it is on none yet, and
// then served by that device's host: here, or forwarded to it (peer.go).

// authCacheTTL is how long a positive token lookup is kept: a login's
// requests (identity, login start, login finish, session) come within a
// second and hit the store once. A removed account keeps working for at
// most this long on each host that served it in the last second.
const authCacheTTL = time.Second

// authCacheMax bounds the cache; when full it is emptied.
const authCacheMax = 1 << 16

// registryCacheTTL is how long a device's or host's registry entry is kept
// for routing: a drain, a retirement or a new peer address is seen by every
// host within this.
const registryCacheTTL = time.Second

// ttlCache keeps values for a while, at most max of them (when full, it is
// emptied: a flood of new keys costs lookups, never memory).
type ttlCache[K comparable, V any] struct {
	mu  sync.Mutex
	m   map[K]ttlEntry[V]
	ttl time.Duration
	max int
}

type ttlEntry[V any] struct {
	v     V
	until time.Time
}

func newTTLCache[K comparable, V any](ttl time.Duration, max int) *ttlCache[K, V] {
	return &ttlCache[K, V]{m: map[K]ttlEntry[V]{}, ttl: ttl, max: max}
}

func (c *ttlCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[K, V]) put(k K, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = ttlEntry[V]{v: v, until: now.Add(c.ttl)}
}

// update changes a value still in the cache, keeping its expiry.
func (c *ttlCache[K, V]) update(k K, fn func(*V)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		fn(&e.v)
		c.m[k] = e
	}
}

// realmCache keeps the store's answers that every request needs, for at
// most a second.
type realmCache struct {
	byToken *ttlCache[[sha256.Size]byte, Account]
	unknown *ttlCache[[sha256.Size]byte, struct{}] // tokens the store did not know
	byName  *ttlCache[string, Account]             // for requests forwarded by peers
	devices *ttlCache[string, state.Device]

	mu      sync.Mutex
	hosts   map[string]state.Host
	hostsAt time.Time
}

func newRealmCache() *realmCache {
	return &realmCache{
		byToken: newTTLCache[[sha256.Size]byte, Account](authCacheTTL, authCacheMax),
		unknown: newTTLCache[[sha256.Size]byte, struct{}](authCacheTTL, authCacheMax),
		byName:  newTTLCache[string, Account](authCacheTTL, authCacheMax),
		devices: newTTLCache[string, state.Device](registryCacheTTL, 1<<12),
	}
}

var (
	errUnknownToken = errors.New("unknown token")
	errStore        = errors.New("the realm's state store is unavailable")
)

// lookupToken returns the account of a bearer token (base64url of
// tokenSize bytes: anything else is refused before any lookup).
func (s *Server) lookupToken(ctx context.Context, token string) (Account, error) {
	if base64.RawURLEncoding.DecodedLen(len(token)) != tokenSize {
		return Account{}, errUnknownToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != tokenSize {
		return Account{}, errUnknownToken
	}
	// A lookup by the token's hash leaks, through timing, at most
	// something about the hash of the token tried: nothing about any
	// valid token.
	sum := sha256.Sum256(raw)
	clear(raw)
	now := time.Now()
	if a, ok := s.cache.byToken.get(sum, now); ok {
		return a, nil
	}
	// A token the store did not know a moment ago is refused without
	// asking again: a client retrying a revoked or mistyped token costs
	// the shared database one query a second, not one per request.
	if _, ok := s.cache.unknown.get(sum, now); ok {
		return Account{}, errUnknownToken
	}
	a, err := s.cfg.Store.AccountByToken(ctx, sum)
	if errors.Is(err, state.ErrNotFound) {
		s.cache.unknown.put(sum, struct{}{}, now)
		return Account{}, errUnknownToken
	}
	if err != nil {
		return Account{}, fmt.Errorf("%w: %v", errStore, err)
	}
	s.cache.byToken.put(sum, a, now)
	return a, nil
}

// accountByName returns the account a peer forwarded a request for,
// cached as tokens are.
func (s *Server) accountByName(ctx context.Context, name string) (Account, error) {
	now := time.Now()
	if a, ok := s.cache.byName.get(name, now); ok {
		return a, nil
	}
	a, err := s.cfg.Store.AccountByName(ctx, name)
	if err != nil {
		return Account{}, err
	}
	s.cache.byName.put(name, a, now)
	return a, nil
}

// placed notes in the cache where an account now is.
func (c *realmCache) placed(a Account) {
	set := func(e *Account) { e.Device = a.Device }
	c.byToken.update(a.TokenSHA256, set)
	c.byName.update(a.Name, set)
}

// device returns a device's registry entry, cached for registryCacheTTL.
func (s *Server) device(ctx context.Context, name string) (state.Device, error) {
	now := time.Now()
	if d, ok := s.cache.devices.get(name, now); ok {
		return d, nil
	}
	d, err := s.cfg.Store.Device(ctx, name)
	if err != nil {
		return state.Device{}, err
	}
	s.cache.devices.put(name, d, now)
	return d, nil
}

// host returns a host's registry entry, the list cached for registryCacheTTL.
func (s *Server) host(ctx context.Context, name string) (state.Host, bool, error) {
	now := time.Now()
	c := s.cache
	c.mu.Lock()
	if c.hosts != nil && now.Sub(c.hostsAt) < registryCacheTTL {
		h, ok := c.hosts[name]
		c.mu.Unlock()
		return h, ok, nil
	}
	c.mu.Unlock()
	hs, err := s.cfg.Store.Hosts(ctx)
	if err != nil {
		return state.Host{}, false, err
	}
	m := make(map[string]state.Host, len(hs))
	for _, h := range hs {
		m[h.Name] = h
	}
	c.mu.Lock()
	c.hosts, c.hostsAt = m, now
	c.mu.Unlock()
	h, ok := m[name]
	return h, ok, nil
}

// maxAge is how recent a device's report (and a host's heartbeat) must
// be: three polls, at least 45 s.
func (s *Server) maxAge() time.Duration {
	return max(3*s.cfg.PollInterval, 45*time.Second)
}

// place puts an account that is on no device on the device Choose picks
// from the registry, and returns the device it is on: that one, or the
// one another host placed it on first.
func (s *Server) place(ctx context.Context, a *Account) (string, error) {
	for try := 0; ; try++ {
		devs, err := s.cfg.Store.Devices(ctx)
		if err != nil {
			return "", fmt.Errorf("%w: %v", errStore, err)
		}
		devs, err = s.reachableDevices(ctx, devs)
		if err != nil {
			return "", fmt.Errorf("%w: %v", errStore, err)
		}
		name, err := state.Choose(devs, s.cfg.Now(), s.maxAge())
		if err != nil {
			return "", err
		}
		got, err := s.cfg.Store.Place(ctx, a.Name, name)
		if errors.Is(err, state.ErrDeviceState) && try < 2 {
			continue // drained or retired since the registry was read
		}
		if err != nil {
			if errors.Is(err, state.ErrDeviceState) || errors.Is(err, state.ErrNotFound) {
				return "", err
			}
			return "", fmt.Errorf("%w: %v", errStore, err)
		}
		a.Device = got
		s.cache.placed(*a)
		s.log.Info("account placed", "account", a.Name, "device", got, "chosen", name)
		return got, nil
	}
}

// reachableDevices keeps the devices a new account may be placed on as far
// as their hosts go: this host's (unless it was removed: its devices then
// serve nobody), and those of peers it can forward to (state.Choose then
// weighs the devices themselves).
func (s *Server) reachableDevices(ctx context.Context, devs []state.Device) ([]state.Device, error) {
	now, maxAge := s.cfg.Now(), s.maxAge()
	ok := map[string]bool{}
	out := devs[:0:0]
	for _, d := range devs {
		r, seen := ok[d.Host]
		if !seen {
			h, found, err := s.host(ctx, d.Host)
			if err != nil {
				return nil, err
			}
			if d.Host == s.cfg.HostName {
				r = !found || !h.Removed
			} else {
				r = found && s.unreachable(h, now, maxAge) == ""
			}
			ok[d.Host] = r
		}
		if r {
			out = append(out, d)
		}
	}
	return out, nil
}

// Retry-After of the realm's own refusals, in seconds.
const (
	retryStore       = "2"
	retryNoDevice    = "30"
	retryUnreachable = "5"
)

// retiredMessage is the 503 of an account whose device is retired.
const retiredMessage = "retired: this account's vault device is retired; re-register or repair through your realms"

// route resolves the account's device, placing the account first if it is
// on none, and returns the device's queue when it is on this host. When it
// is on another, route forwards the request there (peer.go) and returns
// nil; on any failure it answers and returns nil.
func (s *Server) route(w http.ResponseWriter, r *http.Request, a *Account, o *outcome) *deviceQueue {
	ctx := r.Context()
	fwd := peerOf(ctx)
	name := a.Device
	if name == "" {
		if fwd != nil {
			o.status, o.note = http.StatusBadGateway, "forwarded for an account on no device"
			writeError(w, o.status, "peer: the account is on no device here; a forwarded request is not placed or forwarded again", "")
			return nil
		}
		var err error
		if name, err = s.place(ctx, a); err != nil {
			o.status, o.note = http.StatusServiceUnavailable, "placement: "+err.Error()
			if errors.Is(err, errStore) {
				writeError(w, o.status, errStore.Error(), retryStore)
			} else {
				writeError(w, o.status, "no vault device of this realm can take a new account now (none active, healthy and with room)", retryNoDevice)
			}
			return nil
		}
	}
	o.device = name
	d, err := s.device(ctx, name)
	if errors.Is(err, state.ErrNotFound) {
		o.status, o.note = http.StatusInternalServerError, "account placed on an unregistered device"
		writeError(w, o.status, fmt.Sprintf("this account's device %q is not registered in the realm", name), "")
		return nil
	}
	if err != nil {
		o.status, o.note = http.StatusServiceUnavailable, err.Error()
		writeError(w, o.status, errStore.Error(), retryStore)
		return nil
	}
	if d.State == state.Retired {
		o.status, o.note = http.StatusServiceUnavailable, "device retired"
		writeError(w, o.status, retiredMessage, "")
		return nil
	}
	if d.Host != s.cfg.HostName {
		if fwd != nil {
			o.status, o.note = http.StatusBadGateway, "forwarded here for a device on "+d.Host
			writeError(w, o.status, fmt.Sprintf("peer: this host (%s) does not hold the account's device %s (the registry says host %s); a forwarded request is not forwarded again",
				s.cfg.HostName, name, d.Host), "")
			return nil
		}
		s.forward(w, r, a, d, o)
		return nil
	}
	if me, ok, err := s.host(ctx, s.cfg.HostName); err == nil && ok && me.Removed {
		o.status, o.note = http.StatusServiceUnavailable, "this host was removed from the realm"
		writeError(w, o.status, fmt.Sprintf("host removed: this host (%s), which holds this account's vault device %s, was removed from the realm", s.cfg.HostName, name), "")
		return nil
	}
	q := s.byName[name]
	if q == nil {
		o.status, o.note = http.StatusInternalServerError, "account's device not configured"
		writeError(w, o.status, fmt.Sprintf("this account's device %q is not configured on this host", name), "")
		return nil
	}
	return q
}

// takeLogin spends one of the account's login starts from the bucket that
// every host sharing the store shares.
func (s *Server) takeLogin(ctx context.Context, account string) (bool, time.Duration, error) {
	if s.cfg.LoginRate <= 0 {
		return true, 0, nil
	}
	return s.cfg.Store.Take(ctx, "login/"+account, s.cfg.LoginRate, s.cfg.LoginBurst, s.cfg.Now())
}

// register records this host and its devices in the store at start; a
// device name registered on another host stops the start.
func (s *Server) register(ctx context.Context) error {
	if err := state.CheckHostName(s.cfg.HostName); err != nil {
		return err
	}
	if err := s.heartbeat(ctx); err != nil {
		if errors.Is(err, state.ErrExists) {
			return fmt.Errorf("host %s: %w; every cofferd of a realm needs its own -host", s.cfg.HostName, err)
		}
		return fmt.Errorf("registering host %s: %w", s.cfg.HostName, err)
	}
	for _, q := range s.devices {
		name := q.dev.Name()
		if err := s.cfg.Store.RegisterDevice(ctx, name, s.cfg.HostName); err != nil {
			// This process will not run: clear its heartbeat, as a clean
			// stop does, so that the next start is not refused as held by it.
			s.signOff()
			if errors.Is(err, state.ErrExists) {
				return fmt.Errorf("device %s: %w; device names are unique across the realm: rename it in -vault (NAME=unix:…) or run this cofferd with the -host it was registered under", name, err)
			}
			return fmt.Errorf("registering device %s: %w", name, err)
		}
	}
	return nil
}

// heartbeat says in the store that this host (this process) is alive,
// where its peers reach it, and with which certificate key.
func (s *Server) heartbeat(ctx context.Context) error {
	return s.registerHost(ctx, s.cfg.Now())
}

func (s *Server) registerHost(ctx context.Context, seen time.Time) error {
	var key []byte
	if s.cfg.Peer.Cert != nil {
		key = PeerKeyHash(s.cfg.Peer.Cert.Leaf)
	}
	return s.cfg.Store.RegisterHost(ctx, state.Host{
		Name: s.cfg.HostName, PeerURL: s.cfg.Peer.URL, Seen: seen, Instance: s.instance, PeerKey: key,
	}, s.maxAge())
}

// signOff clears this process's heartbeat as it stops, so that the host's
// next process starts at once (after a crash, it waits for the heartbeat
// to go stale).
func (s *Server) signOff() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := s.registerHost(ctx, time.Time{}); err != nil {
		s.log.Warn("clearing the heartbeat in the state store failed", "err", err)
	}
}

// bucketIdle is how long a rate-limit bucket must have been left alone
// before pruneBuckets removes it: twice the time it takes to refill from
// empty, and at least a day, so that a host whose -login-rate is slower
// than this one's still finds the buckets it would have found full.
func (s *Server) bucketIdle() time.Duration {
	refill := time.Duration(float64(s.cfg.LoginBurst) / s.cfg.LoginRate * float64(time.Second))
	return max(24*time.Hour, 2*refill)
}

// pruneBucketsBatch is how many buckets one step of pruning reads (and at
// most removes, in one short transaction): the hosts' logins barely wait.
const pruneBucketsBatch = 1000

// pruneBuckets removes, every BucketPruneInterval, the buckets idle for
// bucketIdle (state.Store.PruneBuckets), so that the buckets table holds
// the accounts that logged in lately, not every account that ever did.
// Every host prunes; that several do at once costs nothing but the scans.
func (s *Server) pruneBuckets(ctx context.Context) {
	s.every(ctx, s.cfg.BucketPruneInterval, func() {
		idleSince := s.cfg.Now().Add(-s.bucketIdle())
		for after := ""; ctx.Err() == nil; {
			pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			n, next, err := s.cfg.Store.PruneBuckets(pctx, idleSince, after, pruneBucketsBatch)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("pruning idle rate-limit buckets failed", "err", err)
				}
				return
			}
			s.metrics.bucketsPruned.Add(float64(n))
			if after = next; next == "" {
				return
			}
		}
	})
}

// heartbeats refreshes the host's registry entry every poll interval.
func (s *Server) heartbeats(ctx context.Context) {
	s.every(ctx, s.cfg.PollInterval, func() {
		hctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		if err := s.heartbeat(hctx); err != nil && ctx.Err() == nil {
			if errors.Is(err, state.ErrExists) || errors.Is(err, state.ErrHostRemoved) {
				s.log.Error("this host's name is no longer this process's in the realm: stop it", "err", err)
			} else {
				s.log.Warn("heartbeat to the state store failed", "err", err)
			}
		}
	})
}

// every runs f each interval until ctx ends, as one of the goroutines
// pollWG waits for.
func (s *Server) every(ctx context.Context, interval time.Duration, f func()) {
	defer s.pollWG.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// reportDevice records what this host saw of a device, now.
func (s *Server) reportDevice(ctx context.Context, name string, r state.Report) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	r.Seen = s.cfg.Now()
	if err := s.cfg.Store.ReportDevice(ctx, name, r); err != nil {
		s.log.Warn("reporting a device's health to the state store failed", "device", name, "err", err)
	}
}

// bearerToken reads the token of Authorization: Bearer.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
