package state

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"
)

// Account is one account of the realm. Device is "" until the account is
// placed; once placed, every request of the account goes to that device,
// which holds its record.
type Account struct {
	Name        string
	UserID      []byte // 1 to 64 bytes; cofferd draws 16
	TokenSHA256 [sha256.Size]byte
	Device      string
	Created     time.Time
}

// DeviceState is an operator's decision about a device.
type DeviceState string

const (
	// Active devices take new accounts and serve their own.
	Active DeviceState = "active"
	// Draining devices serve the accounts placed on them and take no new ones.
	Draining DeviceState = "draining"
	// Retired devices serve nobody; only a device with no account left may
	// be retired.
	Retired DeviceState = "retired"
)

// Device is one vault of the realm as the registry knows it. Name is unique
// across the realm; Host is the cofferd whose USB port (or socket) it is on.
type Device struct {
	Name  string
	Host  string
	State DeviceState

	// Capacity is how many records the device may hold at most, and
	// AnchorBudget how many anchor writes (RPMB wear) it may spend; both
	// set by the operator, 0 meaning none of the operator's (Capacity:
	// the record capacity the device signs, up to DefaultCapacity; see
	// PlacementCapacity) and no budget.
	Capacity     uint64
	AnchorBudget uint64

	// Accounts is the number of accounts placed on it, kept by every
	// write that places, moves or removes an account.
	Accounts uint64

	// What its host last saw: connected and answering its status poll,
	// and the anchor writes, records and record capacity of its last
	// signed status, with Accounts as it was then (AccountsReported).
	Healthy          bool
	AnchorWrites     uint64
	Records          uint64
	RecordCapacity   uint64
	AccountsReported uint64
	Seen             time.Time
}

// Report is what a device's host saw of it at a status poll. The counts
// come from the device's signed status and are kept only when it is
// healthy: an unhealthy report leaves the last ones. A healthy report also
// notes the device's account counter as it is then (AccountsReported).
type Report struct {
	Healthy        bool
	Seen           time.Time
	AnchorWrites   uint64
	Records        uint64
	RecordCapacity uint64
}

// DefaultCapacity is the capacity of a device whose operator set none: a
// USB armory's 16 GB eMMC holds about 20 million records.
const DefaultCapacity = 20_000_000

// Host is one cofferd of the realm: its name and the address where the
// other hosts forward requests to it, with when it last said it was alive.
type Host struct {
	Name    string
	PeerURL string
	Seen    time.Time

	// Instance is the random id the cofferd process holding the name drew
	// at its start: a second process under the same name is refused while
	// the first one's heartbeat is fresh (RegisterHost).
	Instance string
	// PeerKey is the SHA-256 of the SubjectPublicKeyInfo of the host's peer
	// certificate: the other hosts accept a peer connection as this host
	// only with that key. Nil when the host has no peer certificate.
	PeerKey []byte
	// Removed is set by the operator (RemoveHost): the host's key is
	// revoked, its devices' users get 503.
	Removed bool
}

var (
	// ErrNotFound is returned for an account, device or host that does not exist.
	ErrNotFound = errors.New("state: not found")
	// ErrExists is returned when an account's name, user id or token hash,
	// or a device's name on another host, is taken.
	ErrExists = errors.New("state: already exists")
	// ErrHostRemoved is returned by RegisterHost for a host the operator
	// removed, while it comes back with the same process or peer key.
	ErrHostRemoved = errors.New("state: host removed")
	// ErrDeviceState is returned for a change the device's state forbids:
	// placing on a device that is not active, retiring one that still holds
	// accounts, or reviving a retired one.
	ErrDeviceState = errors.New("state: not allowed in the device's state")
)

// Store is cofferd's state. Implementations are safe for concurrent use by
// many goroutines and, for the shared ones, by many hosts: every method is
// one transaction.
type Store interface {
	// AddAccount creates an account (Device may be set to place it at
	// once). ErrExists if its name, user id or token hash is taken.
	AddAccount(ctx context.Context, a Account) error
	// RemoveAccount deletes an account and releases its place.
	RemoveAccount(ctx context.Context, name string) error
	// AccountByToken finds the account of a token's SHA-256.
	AccountByToken(ctx context.Context, tokenSHA256 [sha256.Size]byte) (Account, error)
	// AccountByName finds an account by name.
	AccountByName(ctx context.Context, name string) (Account, error)
	// ListAccounts returns up to limit accounts whose names sort after
	// after, in name order (paging through millions).
	ListAccounts(ctx context.Context, after string, limit int) ([]Account, error)

	// Place puts the account on device if it is on none yet, counting it
	// on the device, and returns the device the account is on: device, or
	// the one another host placed it on first. ErrDeviceState if device is
	// not active, ErrNotFound if the account or device does not exist.
	Place(ctx context.Context, account, device string) (string, error)
	// Unplace takes the account off its device (the operator moves its
	// user: it re-registers, or a realm repairs it, elsewhere).
	Unplace(ctx context.Context, account string) error
	// UnplaceFrom takes up to limit of the accounts on a device that is
	// not active (drain it first: ErrDeviceState otherwise) whose names
	// sort after after off it, in one transaction, and returns how many it
	// took and the name to go on after ("" when it found none left: a
	// batch may be short of limit before the end). Called from
	// "" until it returns "", it empties the device for retirement however
	// many accounts it holds, each batch costing the same.
	UnplaceFrom(ctx context.Context, device, after string, limit int) (taken int, next string, err error)

	// RegisterDevice records a device on a host: new devices are Active;
	// a known one keeps its state and counts. ErrExists if the name is
	// already registered on another host.
	RegisterDevice(ctx context.Context, name, host string) error
	// ReportDevice records what a device's host saw of it.
	ReportDevice(ctx context.Context, name string, r Report) error
	// SetDeviceState drains, retires or reactivates a device.
	SetDeviceState(ctx context.Context, name string, st DeviceState) error
	// SetDeviceLimits sets a device's capacity and anchor-write budget (0: default).
	SetDeviceLimits(ctx context.Context, name string, capacity, anchorBudget uint64) error
	// Devices returns every device, in name order.
	Devices(ctx context.Context) ([]Device, error)
	// Device returns one device.
	Device(ctx context.Context, name string) (Device, error)

	// RegisterHost records a host, its peer address and key, now alive
	// (h.Seen), as CheckRegisterHost allows against its entry: ErrExists
	// while another instance's heartbeat is younger than fresh,
	// ErrHostRemoved for a removed host coming back with its revoked key.
	// Removed is cleared when it is allowed.
	RegisterHost(ctx context.Context, h Host, fresh time.Duration) error
	// RemoveHost marks a host removed (ErrNotFound if it is not
	// registered): its peer key is revoked and its devices serve nobody.
	RemoveHost(ctx context.Context, name string) error
	// Hosts returns every host, in name order.
	Hosts(ctx context.Context) ([]Host, error)

	// Take spends one token of key's bucket (burst tokens, refilled at
	// rate per second; rate 0 is no limit), or reports how long until one
	// is there. All hosts sharing the store share the buckets.
	Take(ctx context.Context, key string, rate float64, burst int, now time.Time) (ok bool, wait time.Duration, err error)
	// PruneBuckets looks at up to limit buckets whose keys sort after
	// after, removes those last refilled before idleSince, and returns how
	// many it removed and the key to go on after ("" once it looked at
	// the last). A bucket idle for longer than it takes to refill is full,
	// as an absent one is to Take, so pruning those changes no limit: it
	// keeps the table to the accounts that logged in lately rather than
	// every account that ever did. Called from "" until it returns "",
	// it reads each bucket once, a batch at a time, and holds no write
	// lock while it reads.
	PruneBuckets(ctx context.Context, idleSince time.Time, after string, limit int) (removed int, next string, err error)

	Close() error
}
