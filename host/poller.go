package host

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"time"

	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
)

// poll asks the device for its identity (once per connection) and its
// signed status (every PollInterval), for /healthz and the anchor write
// gauge. A stream device that leaves two polls in a row unanswered is reset:
// a UART stays open while the firmware behind it reboots, and its requests
// in flight would otherwise wait for their timeouts.
func (s *Server) poll(ctx context.Context, q *deviceQueue) {
	defer s.pollWG.Done()
	tick := time.NewTicker(min(250*time.Millisecond, s.cfg.PollInterval))
	defer tick.Stop()
	var last, reported time.Time
	var lastConn uint64
	timeouts := 0
	for {
		if ctx.Err() == nil && !q.dev.Connected() && time.Since(reported) >= s.cfg.PollInterval {
			// Told to the registry, so that no host places new accounts
			// on it; its own users are answered 503 meanwhile.
			reported = time.Now()
			s.reportDevice(ctx, q.dev.Name(), state.Report{})
		}
		if q.dev.Connected() {
			conn := q.info().Connects
			if conn != lastConn || time.Since(last) >= s.cfg.PollInterval {
				last, lastConn, reported = time.Now(), conn, time.Now()
				if s.pollOnce(ctx, q, conn) {
					timeouts = 0
				} else if ctx.Err() == nil {
					timeouts++
					if r, ok := q.dev.(interface{ Reset() }); ok && timeouts >= 2 {
						s.log.Warn("vault device does not answer status polls; dropping its connection", "device", q.dev.Name())
						r.Reset()
						timeouts = 0
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollOnce returns false when the device did not answer in time. It
// reports the device to the registry: healthy when it answered a signed,
// fresh status.
func (s *Server) pollOnce(parent context.Context, q *deviceQueue, conn uint64) bool {
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	defer cancel()
	name := q.dev.Name()
	var report state.Report
	defer func() {
		if parent.Err() == nil { // not while cofferd stops
			s.reportDevice(parent, name, report)
		}
	}()
	old := q.polled.Load()
	st := &polledState{connection: conn}
	if old != nil && old.connection == conn {
		*st = *old
	}
	if st.identity == nil {
		reply, err := q.dev.RoundTrip(ctx, s.identReq)
		if err != nil {
			return !errors.Is(err, context.DeadlineExceeded)
		}
		var signed protocol.SignedIdentity
		err = protocol.Decode(reply, protocol.TypeIdentity, &signed)
		var id protocol.Identity
		if err == nil {
			err = protocol.Unmarshal(signed.Body, &id)
		}
		switch {
		case errors.Is(err, &protocol.Error{Code: protocol.CodeNotProvisioned}):
			if !st.notProvision {
				s.log.Warn("vault device is not provisioned: it has no signed identity bundle", "device", name)
			}
			st.notProvision = true
		case err != nil:
			s.log.Warn("vault device sent an unreadable identity", "device", name, "err", err)
		default:
			st.identity, st.notProvision = &id, false
			attrs := []any{"vault_name", id.Name, "insecure", id.Insecure, "max_limit", id.MaxLimit, "signing_key", hex.EncodeToString(id.SigningKey)}
			if id.Insecure {
				// Said as loudly as at configuration time (New): a
				// software vault or emulator is only known from here.
				s.insecureDevice(name, attrs...)
			} else {
				s.log.Info("vault device identity", append([]any{"device", name}, attrs...)...)
			}
		}
	}
	if old == nil || old.identity != st.identity || old.notProvision != st.notProvision {
		// What the identity says (insecure) counts from now, not from
		// the end of the status round trip.
		learned := *st
		q.polled.Store(&learned)
	}
	// A fresh nonce per poll: the vault signs it back, so a status that a
	// link or a stale device replays is refused, not shown as current.
	sreq := protocol.NewStatusRequest()
	statusReq, _ := protocol.Encode(protocol.TypeStatus, sreq)
	reply, err := q.dev.RoundTrip(ctx, statusReq)
	if err != nil {
		q.polled.Store(st)
		return !errors.Is(err, context.DeadlineExceeded)
	}
	var sr protocol.StatusReply
	var status *protocol.Status
	if err = protocol.Decode(reply, protocol.TypeStatus, &sr); err == nil {
		if st.identity == nil {
			err = errors.New("no identity to verify the status with")
		} else {
			status, err = sr.Verify(ed25519.PublicKey(st.identity.SigningKey), sreq.Nonce)
		}
	}
	if err != nil {
		if st.statusErr != err.Error() {
			s.log.Warn("vault status unusable", "device", name, "err", err)
		}
		// What /healthz and the metrics showed came from an earlier
		// status; without a fresh one, nothing is vouched for.
		st.status, st.statusErr = nil, err.Error()
	} else {
		st.status, st.statusErr = status, ""
		// A device refused as insecure takes no account.
		insecure, _ := q.insecure()
		report = state.Report{
			Healthy:        q.dev.Connected() && !(insecure && s.cfg.RefuseInsecure),
			AnchorWrites:   status.AnchorWrites,
			Records:        status.Records,
			RecordCapacity: status.RecordCapacity,
		}
		s.metrics.anchorWrites.WithLabelValues(name).Set(float64(status.AnchorWrites))
		s.metrics.records.WithLabelValues(name).Set(float64(status.Records))
		s.metrics.recordCapacity.WithLabelValues(name).Set(float64(status.RecordCapacity))
		s.metrics.storeSequence.WithLabelValues(name).Set(float64(status.StoreSequence))
	}
	q.polled.Store(st)
	return true
}
