package soak

import (
	"context"
	"errors"
	"time"

	"github.com/cofferhsm/coffer/protocol"
)

// restart kills the vault process with nothing in flight, starts it again
// on the same state folder, and checks every account against the model:
// whatever the vault acknowledged before the kill must still be there.
func (r *runner) restart(ctx context.Context, rep *Report) {
	st, err := r.status(ctx)
	if err != nil {
		r.fails.add("status", "-", "before the restart: %v", err)
		return
	}
	rep.SeqAtKill, rep.AnchorAtKill = st.StoreSequence, st.AnchorWrites
	rep.VaultAtKill = r.vault.sample()
	rep.StoreBytes = r.vault.storeBytes()
	r.vault.kill()
	if r.cfg.beforeRestart != nil {
		if err := r.cfg.beforeRestart(r.cfg.StateDir); err != nil {
			r.fails.add("restart", "-", "%v", err)
			return
		}
	}
	pub, err := r.vault.start(false)
	if err != nil {
		r.fails.add("restart", "-", "%v", err)
		return
	}
	if !pub.Equal(r.pub) {
		r.fails.add("restart", "-", "another provisioning key after the restart")
	}
	r.fails.setPhase("restart")
	if !waitUntil(30*time.Second, r.dev.Connected) {
		r.fails.add("restart", "-", "cofferd did not reconnect")
		return
	}
	var st2 *protocol.Status
	for i := 0; i < 50; i++ {
		if st2, err = r.status(ctx); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.fails.add("status", "-", "after the restart: %v", err)
		return
	}
	rep.SeqAfterRestart, rep.AnchorAfterRestart = st2.StoreSequence, st2.AnchorWrites
	if st2.StoreSequence < st.StoreSequence || st2.AnchorWrites < st.AnchorWrites {
		r.fails.add("store-sequence-backwards", "-", "store sequence %d, anchor writes %d after the restart; %d, %d before",
			st2.StoreSequence, st2.AnchorWrites, st.StoreSequence, st.AnchorWrites)
	}
	for _, w := range r.workers {
		if w != nil {
			w.acct.rebooted()
		}
	}
	r.verifyAll(ctx)
}

// status asks the vault for its signed status through cofferd, as a
// client would, and verifies it.
func (r *runner) status(ctx context.Context) (*protocol.Status, error) {
	for _, w := range r.workers {
		if w == nil {
			continue
		}
		req := protocol.NewStatusRequest()
		b, err := protocol.Encode(protocol.TypeStatus, req)
		if err != nil {
			return nil, err
		}
		out, err := w.vc.RoundTrip(ctx, b)
		if err != nil {
			return nil, err
		}
		var reply protocol.StatusReply
		if err := protocol.Decode(out, protocol.TypeStatus, &reply); err != nil {
			return nil, err
		}
		return reply.Verify(r.id.SigningKey, req.Nonce)
	}
	return nil, errors.New("no client")
}

func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
