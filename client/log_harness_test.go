package client

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// devLog is a release log for client tests: three witnesses, a policy of
// two, and a source that serves it with two cosignatures (a good log).
type devLog struct {
	t   testing.TB
	l   *releaselogtest.Log
	src *releaselogtest.Source
}

func newDevLog(t testing.TB) *devLog {
	l := releaselogtest.New(t, "releases.coffer.test", 3)
	return &devLog{t: t, l: l, src: &releaselogtest.Source{Log: l, Cosigners: 2}}
}

func (d *devLog) policy() []byte { return []byte(d.l.Policy(2).String()) }

// pin pins the log's policy in cfg.
func (d *devLog) pin(cfg *Config) {
	d.t.Helper()
	if _, err := cfg.PinLogPolicy(d.policy()); err != nil {
		d.t.Fatal(err)
	}
}

// boardOf is the board a release for a vault of this insecurity is for.
func boardOf(insecure bool) string {
	if insecure {
		return "software"
	}
	return "usbarmory"
}

// release logs a release of firmware for board, version v.
func (d *devLog) release(v uint64, board string, firmware []byte) uint64 {
	return d.l.Append(releaselogtest.Release(v, board, firmware))
}

// bundle logs a signed identity bundle.
func (d *devLog) bundle(si *protocol.SignedIdentity) uint64 {
	return d.l.Append(&releaselog.Entry{Kind: releaselog.KindIdentity, Identity: si})
}

// revoke logs a revocation.
func (d *devLog) revoke(target releaselog.Kind, hash []byte, reason string) uint64 {
	return d.l.Append(&releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{Target: target, Hash: hash, Reason: reason}})
}

// vault logs a release for id's firmware and its bundle si, as the
// provisioning of a real vault does.
func (d *devLog) vault(si *protocol.SignedIdentity, id *protocol.Identity) (release, bundle uint64) {
	release = d.release(d.l.Size()+1, boardOf(id.Insecure), id.FirmwareHash)
	return release, d.bundle(si)
}

// hostBundle is the signed bundle the fake host serves for its vault.
func hostBundle(t testing.TB, h *fakehost.Host) *protocol.SignedIdentity {
	t.Helper()
	var si protocol.SignedIdentity
	if err := protocol.Decode(h.SignIdentity(nil, h.VaultIdentity()), protocol.TypeIdentity, &si); err != nil {
		t.Fatal(err)
	}
	return &si
}

// serveIdentity makes the host serve id, signed by its provisioning key,
// and returns the bundle. The device keeps running its own firmware: a
// bundle naming other firmware is refused at the contact unless the device
// was booted into it (fakehost).
func serveIdentity(t testing.TB, h *fakehost.Host, id *protocol.Identity) *protocol.SignedIdentity {
	t.Helper()
	b := h.SignIdentity(nil, id)
	h.SetIdentity(b)
	var si protocol.SignedIdentity
	if err := protocol.Decode(b, protocol.TypeIdentity, &si); err != nil {
		t.Fatal(err)
	}
	return &si
}

func sum256(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// rollbackSource serves the log's checkpoint at an older size: a host that
// rolls its copy of the log back, or freezes it, to hide what came after.
type rollbackSource struct {
	*releaselogtest.Source
	size uint64
}

func (s *rollbackSource) Checkpoint(context.Context) ([]byte, error) {
	return s.Log.CheckpointAt(s.size, s.Cosigners), nil
}

// noticeLog collects notices (from several realms' goroutines at once).
type noticeLog struct {
	mu  sync.Mutex
	got []Notice
}

func (n *noticeLog) add(x Notice) { n.mu.Lock(); n.got = append(n.got, x); n.mu.Unlock() }

func (n *noticeLog) kinds() []NoticeKind {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []NoticeKind
	for _, x := range n.got {
		out = append(out, x.Kind)
	}
	return out
}
