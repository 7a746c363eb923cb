package host

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cofferhsm/coffer/host/state"
)

// Health is the body of GET /healthz.
type Health struct {
	Status   string                  `json:"status"` // ok, degraded (some device down, a peer unreachable, a device of the realm unhealthy) or down (none of this host's connected)
	Host     string                  `json:"host"`
	Devices  map[string]DeviceHealth `json:"devices"` // this host's
	Realm    map[string]RealmDevice  `json:"realm,omitempty"`
	Peers    map[string]PeerHealth   `json:"peers,omitempty"`
	Warnings []string                `json:"warnings,omitempty"`
}

// RealmDevice is one device of the realm in Health, as the registry says.
type RealmDevice struct {
	Host     string    `json:"host"`
	State    string    `json:"state"`
	Healthy  bool      `json:"healthy"` // reported healthy by its host within three polls
	Accounts uint64    `json:"accounts"`
	Seen     time.Time `json:"seen"`
}

// PeerHealth is another host of the realm in Health.
type PeerHealth struct {
	URL       string    `json:"url"`
	Seen      time.Time `json:"seen"`
	Reachable bool      `json:"reachable"`       // heartbeat within three polls, and the last forward there answered
	Error     string    `json:"error,omitempty"` // why not
}

// DeviceHealth is one device in Health.
type DeviceHealth struct {
	Connected     bool    `json:"connected"`
	Insecure      *bool   `json:"insecure"` // null until known
	Queue         int64   `json:"queue"`
	InFlight      int64   `json:"in_flight"`
	Kind          string  `json:"kind,omitempty"`
	Provisioned   *bool   `json:"provisioned,omitempty"`
	StoreSequence *uint64 `json:"store_sequence,omitempty"`
	AnchorWrites  *uint64 `json:"anchor_writes,omitempty"`
	// The store's records and its estimate of how many it holds when
	// full, as the last signed status said.
	Records        *uint64 `json:"records,omitempty"`
	RecordCapacity *uint64 `json:"record_capacity,omitempty"`
}

// Health reports the devices' state.
func (s *Server) Health() Health {
	h := Health{Host: s.cfg.HostName, Devices: map[string]DeviceHealth{}}
	up := 0
	for _, q := range s.devices {
		name := q.dev.Name()
		info := q.info()
		dh := DeviceHealth{Connected: q.dev.Connected(), Queue: q.waiting.Load(), InFlight: q.inFlight.Load(), Kind: info.Kind}
		if dh.Connected {
			up++
		}
		if ins, known := q.insecure(); known {
			dh.Insecure = &ins
			if ins {
				h.Warnings = append(h.Warnings, fmt.Sprintf("device %s is an INSECURE vault (software vault or emulator); for development and tests only", name))
			}
		}
		if p := q.polled.Load(); p != nil {
			if p.identity != nil || p.notProvision {
				prov := !p.notProvision
				dh.Provisioned = &prov
			}
			if p.status != nil {
				dh.StoreSequence, dh.AnchorWrites = &p.status.StoreSequence, &p.status.AnchorWrites
				dh.Records, dh.RecordCapacity = &p.status.Records, &p.status.RecordCapacity
			}
		}
		h.Devices[name] = dh
	}
	realmOK := s.realmHealth(&h)
	switch {
	case up == 0:
		h.Status = "down"
	case up < len(s.devices) || !realmOK:
		h.Status = "degraded"
	default:
		h.Status = "ok"
	}
	return h
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	o := &outcome{typ: "healthz"}
	if !allowMethod(w, r, http.MethodGet, o) {
		return
	}
	h := s.Health()
	status := http.StatusOK
	if h.Status == "down" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

// realmHealth adds the realm's devices and the other hosts to h, and
// reports whether all are well.
func (s *Server) realmHealth(h *Health) bool {
	// (Only the class of a failed forward is shown, never its URL: anyone
	// may read /healthz.)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now, maxAge := s.cfg.Now(), s.maxAge()
	devs, err := s.cfg.Store.Devices(ctx)
	var hosts []state.Host
	if err == nil {
		hosts, err = s.cfg.Store.Hosts(ctx)
	}
	if err != nil {
		h.Warnings = append(h.Warnings, "the realm's state store is unavailable: "+err.Error())
		return false
	}
	ok := true
	h.Realm = map[string]RealmDevice{}
	for _, d := range devs {
		healthy := d.Healthy && now.Sub(d.Seen) <= maxAge
		h.Realm[d.Name] = RealmDevice{Host: d.Host, State: string(d.State), Healthy: healthy, Accounts: d.Accounts, Seen: d.Seen}
		if !healthy && d.State != state.Retired {
			ok = false
			h.Warnings = append(h.Warnings, fmt.Sprintf("device %s on host %s is unhealthy: its %d accounts get 503", d.Name, d.Host, d.Accounts))
		}
	}
	h.Peers = map[string]PeerHealth{}
	for _, p := range hosts {
		if p.Name == s.cfg.HostName {
			continue
		}
		ph := PeerHealth{URL: p.PeerURL, Seen: p.Seen, Reachable: true}
		if why := s.unreachable(p, now, maxAge); why != "" {
			ph.Reachable, ph.Error = false, why
		}
		if p.Removed {
			// Removed by the operator: named, not a fault to report.
			h.Peers[p.Name] = ph
			continue
		}
		if !ph.Reachable {
			ok = false
			h.Warnings = append(h.Warnings, fmt.Sprintf("peer host %s is unreachable (%s): the accounts of its devices get 503", p.Name, ph.Error))
		}
		h.Peers[p.Name] = ph
	}
	return ok
}

// unreachable says why forwards to the peer host p fail, or "" when they
// may succeed: a removed host, no https peer URL or key, no heartbeat
// within maxAge, or the last forward, within maxAge, unanswered (its class
// only).
func (s *Server) unreachable(p state.Host, now time.Time, maxAge time.Duration) string {
	switch {
	case p.Removed:
		return "host removed"
	case p.PeerURL == "":
		return "no peer URL in the registry"
	case checkPeerURL(p.PeerURL) != nil:
		return "peer URL is not https://: refused"
	case len(p.PeerKey) == 0:
		return "no peer certificate key in the registry"
	case s.cfg.Peer.Cert == nil:
		return "this host has no peer certificate"
	case p.Seen.IsZero():
		return "stopped (no heartbeat)"
	case now.Sub(p.Seen) > maxAge:
		return fmt.Sprintf("no heartbeat for %s", now.Sub(p.Seen).Round(time.Second))
	}
	if class, failed := s.peers.unanswered(p.Name, time.Now(), maxAge); failed {
		return "last forward failed: " + class
	}
	return ""
}
