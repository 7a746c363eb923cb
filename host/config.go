package host

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol/transport"
)

// DeviceSpec is one vault device in the configuration: `[NAME=]unix:PATH`
// (the software vault, `softvault serve`, or QEMU's UART) or
// `[NAME=]serial:PATH|auto` (a USB armory). cofferd never runs a vault
// itself: it links no vault code.
type DeviceSpec struct {
	Name string
	Kind string // unix, serial
	Arg  string // the socket path or port ("auto")
}

func (s DeviceSpec) String() string { return s.Name + "=" + s.Kind + ":" + s.Arg }

// ParseDeviceSpecs reads a comma-separated list of device specs. Devices
// without a name are named vault0, vault1, … by position.
func ParseDeviceSpecs(list string) ([]DeviceSpec, error) {
	var specs []DeviceSpec
	seen := map[string]bool{}
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		s := DeviceSpec{Name: fmt.Sprintf("vault%d", i)}
		if name, rest, ok := strings.Cut(item, "="); ok {
			s.Name, item = name, rest
		}
		if !deviceNameRE.MatchString(s.Name) {
			return nil, fmt.Errorf("device name %q: use 1 to 32 of A-Z a-z 0-9 . _ -", s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("device %q configured twice", s.Name)
		}
		seen[s.Name] = true
		s.Kind, s.Arg, _ = strings.Cut(item, ":")
		switch s.Kind {
		case "unix", "serial":
			if s.Arg == "" {
				return nil, fmt.Errorf("device %s: %s needs a path", s.Name, s.Kind)
			}
		default:
			return nil, fmt.Errorf("device %q: want unix:PATH or serial:PATH|auto (a software vault is its own process: softvault serve -listen unix:PATH)", item)
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, errors.New("no vault device configured: want unix:PATH or serial:PATH|auto")
	}
	return specs, nil
}

// OpenOptions are what OpenDevices needs besides the specs.
type OpenOptions struct {
	USBID  transport.USBID // for serial:auto; transport.DefaultUSBID if zero
	Stream StreamOptions
	Log    *slog.Logger
}

// OpenDevices opens every device in specs. They connect in the background.
func OpenDevices(specs []DeviceSpec, opts OpenOptions) []Device {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.USBID == (transport.USBID{}) {
		opts.USBID = transport.DefaultUSBID
	}
	var devs []Device
	for _, s := range specs {
		so := opts.Stream
		so.Log = opts.Log
		so.Kind, so.Address = s.Kind, s.Arg
		switch s.Kind {
		case "unix":
			devs = append(devs, NewStreamDevice(s.Name, transport.UnixDialer(s.Arg), so))
		case "serial":
			if s.Arg == "auto" {
				so.Address = "auto " + opts.USBID.String()
			}
			opts.Log.Warn("serial vault devices are untested on hardware", "device", s.Name, "port", so.Address)
			devs = append(devs, NewStreamDevice(s.Name, transport.SerialDialer(s.Arg, opts.USBID), so))
		}
	}
	return devs
}

// Config configures a Server. Zero values take the defaults shown.
type Config struct {
	Devices []Device // at least one: the devices on this host's ports

	// Store is the realm's state (host/state): accounts, their placement
	// on devices, the registry of devices and hosts, and the rate-limit
	// buckets; shared by every host of the realm. Required.
	Store state.Store
	// HostName names this host in Store: its devices are registered under
	// it, and requests for accounts placed on another host's devices are
	// forwarded there (Peer). "local" if empty.
	HostName string

	// Peer is how this host reaches the others (peer.go): the mutual-TLS
	// client and the URL the others dial to reach this one. Zero: this host
	// forwards nothing, and answers 503 for accounts placed on another
	// host's devices.
	Peer PeerConfig

	// PeerInFlight bounds the forwards in flight to each peer host; more
	// are answered 503 at once, so that a slow peer does not hold all of
	// this host's connections: DefaultPeerInFlight.
	PeerInFlight int

	// Realms keeps the accounts' realm manifests and resume blobs
	// (API.md, "Realm storage"); nil: those endpoints answer 501.
	Realms *RealmStore

	// ReleaseLog is the release log served read-only under /v1/log/
	// (API.md, "The release log"); nil: those paths answer 404.
	ReleaseLog *ReleaseLog

	// Rollbacks is the file of the operator's rollback declarations
	// (rollbacks.go), served under GET /v1/rollbacks and read at each
	// request; "": that endpoint answers 501.
	Rollbacks string

	Timeout  time.Duration // per vault request, queueing included: 10 s
	Queue    int           // requests waiting per device before 503: 256 (negative: none may wait)
	InFlight int           // requests in flight per device: 64

	LoginRate  float64 // login starts per second per account; 0: no limit
	LoginBurst int     // login starts an account may make at once: 5
	// BucketPruneInterval is how often this host removes the rate-limit
	// buckets that have been idle long enough to be full (bucketIdle):
	// 1 h; negative: never.
	BucketPruneInterval time.Duration

	PollInterval time.Duration // status poll of each device (anchor writes): 15 s; negative: never

	// MaxConnections bounds the HTTP connections open at once on a
	// listener prepared by Listener (Serve does), idle keep-alive ones
	// included; more are answered 503 and closed: DefaultMaxConnections.
	MaxConnections int

	// RefuseInsecure refuses every device known to be insecure (its
	// identity bundle says so: a software vault or an emulator, whose keys
	// are files on the operator's machine): no request is relayed to it
	// (503), and Server.Refused reports it. cofferd sets it unless run
	// with -allow-insecure-vault. Clients refuse an insecure vault on their
	// own unless told --insecure; this keeps an operator from serving one
	// by mistake.
	RefuseInsecure bool

	Log *slog.Logger     // slog.Default(); never given a body
	Now func() time.Time // time.Now
}

// Defaults of Config and of cofferd's flags.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultQueue        = 256
	DefaultInFlight     = 64
	DefaultLoginBurst   = 5
	DefaultPollInterval = 15 * time.Second
)

// DefaultLoginRate is 10 login starts per minute per account.
const DefaultLoginRate = 10.0 / 60
