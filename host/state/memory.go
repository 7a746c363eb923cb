package state

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is a Store in this process's memory, for tests and embedding: it
// is lost when the process ends and shared with no other host.
type Memory struct {
	mu       sync.Mutex
	accounts map[string]*Account
	byToken  map[[sha256.Size]byte]string
	byUser   map[string]string
	devices  map[string]*Device
	hosts    map[string]*Host
	buckets  map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{
		accounts: map[string]*Account{}, byToken: map[[sha256.Size]byte]string{}, byUser: map[string]string{},
		devices: map[string]*Device{}, hosts: map[string]*Host{}, buckets: map[string]*bucket{},
	}
}

var _ Store = (*Memory)(nil)

func (m *Memory) AddAccount(_ context.Context, a Account) error {
	if err := CheckAccount(a); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, n := m.accounts[a.Name]
	_, t := m.byToken[a.TokenSHA256]
	_, u := m.byUser[string(a.UserID)]
	if n || t || u {
		return fmt.Errorf("%w: account %q (its name, user id or token)", ErrExists, a.Name)
	}
	if a.Device != "" {
		d := m.devices[a.Device]
		if d == nil {
			return fmt.Errorf("%w: device %q", ErrNotFound, a.Device)
		}
		if d.State != Active {
			return fmt.Errorf("%w: device %q is %s", ErrDeviceState, a.Device, d.State)
		}
		d.Accounts++
	}
	a.UserID = slices.Clone(a.UserID)
	m.accounts[a.Name] = &a
	m.byToken[a.TokenSHA256] = a.Name
	m.byUser[string(a.UserID)] = a.Name
	return nil
}

func (m *Memory) RemoveAccount(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.accounts[name]
	if a == nil {
		return fmt.Errorf("%w: account %q", ErrNotFound, name)
	}
	if d := m.devices[a.Device]; d != nil && a.Device != "" {
		d.Accounts--
	}
	delete(m.accounts, name)
	delete(m.byToken, a.TokenSHA256)
	delete(m.byUser, string(a.UserID))
	return nil
}

func (m *Memory) account(name string) (Account, error) {
	a := m.accounts[name]
	if a == nil {
		return Account{}, fmt.Errorf("%w: account %q", ErrNotFound, name)
	}
	c := *a
	c.UserID = slices.Clone(a.UserID)
	return c, nil
}

func (m *Memory) AccountByToken(_ context.Context, sum [sha256.Size]byte) (Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name, ok := m.byToken[sum]
	if !ok {
		return Account{}, fmt.Errorf("%w: token", ErrNotFound)
	}
	return m.account(name)
}

func (m *Memory) AccountByName(_ context.Context, name string) (Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.account(name)
}

func (m *Memory) ListAccounts(_ context.Context, after string, limit int) ([]Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names, _ := page(m.accounts, after, limit, func(*Account) bool { return true })
	out := make([]Account, 0, len(names))
	for _, n := range names {
		a, _ := m.account(n)
		out = append(out, a)
	}
	return out, nil
}

func (m *Memory) Place(_ context.Context, account, device string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.accounts[account]
	if a == nil {
		return "", fmt.Errorf("%w: account %q", ErrNotFound, account)
	}
	if a.Device != "" {
		return a.Device, nil
	}
	d := m.devices[device]
	if d == nil {
		return "", fmt.Errorf("%w: device %q", ErrNotFound, device)
	}
	if d.State != Active {
		return "", fmt.Errorf("%w: device %q is %s", ErrDeviceState, device, d.State)
	}
	a.Device = device
	d.Accounts++
	return device, nil
}

func (m *Memory) Unplace(_ context.Context, account string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.accounts[account]
	if a == nil {
		return fmt.Errorf("%w: account %q", ErrNotFound, account)
	}
	if d := m.devices[a.Device]; d != nil && a.Device != "" {
		d.Accounts--
	}
	a.Device = ""
	return nil
}

func (m *Memory) UnplaceFrom(_ context.Context, device, after string, limit int) (int, string, error) {
	if limit < 1 {
		return 0, "", fmt.Errorf("state: unplacing %d accounts at a time", limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.devices[device]
	if d == nil {
		return 0, "", fmt.Errorf("%w: device %q", ErrNotFound, device)
	}
	if d.State == Active {
		return 0, "", errEvacuateActive(device)
	}
	names, _ := page(m.accounts, after, limit, func(a *Account) bool { return a.Device == device })
	next := ""
	if len(names) > 0 {
		next = names[len(names)-1] // as the SQL stores: only an empty batch ends the walk
	}
	for _, name := range names {
		m.accounts[name].Device = ""
	}
	d.Accounts -= uint64(len(names))
	return len(names), next, nil
}

func (m *Memory) RegisterDevice(_ context.Context, name, host string) error {
	if err := CheckDeviceName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.devices[name]; d != nil {
		if d.Host != host {
			return fmt.Errorf("%w: device %q is registered on host %q", ErrExists, name, d.Host)
		}
		return nil
	}
	m.devices[name] = &Device{Name: name, Host: host, State: Active}
	return nil
}

func (m *Memory) ReportDevice(_ context.Context, name string, r Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.devices[name]
	if d == nil {
		return fmt.Errorf("%w: device %q", ErrNotFound, name)
	}
	d.Healthy, d.Seen = r.Healthy, r.Seen
	if r.Healthy {
		d.AnchorWrites, d.Records, d.RecordCapacity, d.AccountsReported = r.AnchorWrites, r.Records, r.RecordCapacity, d.Accounts
	}
	return nil
}

func (m *Memory) SetDeviceState(_ context.Context, name string, st DeviceState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.devices[name]
	if d == nil {
		return fmt.Errorf("%w: device %q", ErrNotFound, name)
	}
	if err := CheckTransition(*d, st); err != nil {
		return err
	}
	d.State = st
	return nil
}

func (m *Memory) SetDeviceLimits(_ context.Context, name string, capacity, anchorBudget uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.devices[name]
	if d == nil {
		return fmt.Errorf("%w: device %q", ErrNotFound, name)
	}
	d.Capacity, d.AnchorBudget = capacity, anchorBudget
	return nil
}

func (m *Memory) Devices(_ context.Context) ([]Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Device, 0, len(m.devices))
	for _, d := range m.devices {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *Memory) Device(_ context.Context, name string) (Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.devices[name]
	if d == nil {
		return Device{}, fmt.Errorf("%w: device %q", ErrNotFound, name)
	}
	return *d, nil
}

func (m *Memory) RegisterHost(_ context.Context, h Host, fresh time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := CheckRegisterHost(m.hosts[h.Name], h, fresh); err != nil {
		return err
	}
	h.PeerKey, h.Removed = slices.Clone(h.PeerKey), false
	m.hosts[h.Name] = &h
	return nil
}

func (m *Memory) RemoveHost(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hosts[name]
	if h == nil {
		return fmt.Errorf("%w: host %q", ErrNotFound, name)
	}
	h.Removed = true
	return nil
}

func (m *Memory) Hosts(_ context.Context) ([]Host, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Host, 0, len(m.hosts))
	for _, h := range m.hosts {
		c := *h
		c.PeerKey = slices.Clone(h.PeerKey)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *Memory) Take(_ context.Context, key string, rate float64, burst int, now time.Time) (bool, time.Duration, error) {
	if rate <= 0 {
		return true, 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(max(burst, 1)), last: now}
		m.buckets[key] = b
	}
	ok, wait := Refill(&b.tokens, &b.last, rate, burst, now)
	return ok, wait, nil
}

func (m *Memory) PruneBuckets(_ context.Context, idleSince time.Time, after string, limit int) (int, string, error) {
	if limit < 1 {
		return 0, "", fmt.Errorf("state: pruning %d buckets at a time", limit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keys, next := page(m.buckets, after, limit, func(*bucket) bool { return true })
	n := 0
	for _, key := range keys {
		if m.buckets[key].last.Before(idleSince) {
			delete(m.buckets, key)
			n++
		}
	}
	return n, next, nil
}

func (m *Memory) Close() error { return nil }

// page returns, in order, up to limit of the keys of m that sort after
// after and whose values match, and the key to go on after: the last one
// returned when there were limit of them (limit < 0: no limit, and no key
// to go on after), else "".
func page[V any](m map[string]V, after string, limit int, match func(V) bool) ([]string, string) {
	var keys []string
	for k, v := range m {
		if k > after && match(v) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if limit < 0 || len(keys) < limit {
		return keys, ""
	}
	keys = keys[:limit]
	if limit == 0 {
		return keys, ""
	}
	return keys, keys[limit-1]
}
