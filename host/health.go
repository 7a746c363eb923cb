package host

import (
	"fmt"
	"net/http"
)

// Health is the body of GET /healthz.
type Health struct {
	Status   string                  `json:"status"` // ok, degraded (some device down) or down (none connected)
	Devices  map[string]DeviceHealth `json:"devices"`
	Warnings []string                `json:"warnings,omitempty"`
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
}

// Health reports the devices' state.
func (s *Server) Health() Health {
	h := Health{Devices: map[string]DeviceHealth{}}
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
			}
		}
		h.Devices[name] = dh
	}
	switch {
	case up == 0:
		h.Status = "down"
	case up < len(s.devices):
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
