package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

// TestKeyRotationHandsOver (REALMS.md 13.4, 5.6): a rotation registers a
// version wrapping a new K' under the same password, with the old
// anchor's handover signature over the new anchor. The rotating device pins
// the new anchor, set code and recipient; a second device that pinned only
// the old anchor follows the handover and recovers K'; a device whose
// pinned anchor is another key refuses the version (the handover must be
// its own anchor's), and evaluates nothing.
func TestKeyRotationHandsOver(t *testing.T) {
	f := newRealmFixture(t, 2, 3, realmOptions{})
	old := f.register("pw", 10)
	second := newDevice(t, f.cfg)
	oldCode, oldAnchor := f.cfg.Realms.SetCode(), f.cfg.Realms.Anchor
	rep, next, err := f.set().RotateKey(context.Background(), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Done || next == nil || next.Equal(old) {
		t.Fatalf("rotation: %+v", rep)
	}
	if !strings.HasPrefix(rep.Summary(), "rotate complete at 3 of 3 realms") || rep.SetCode == oldCode || rep.SetCode != f.cfg.Realms.SetCode() {
		t.Errorf("summary %q, set code %q (old %q)", rep.Summary(), rep.SetCode, oldCode)
	}
	want, _ := next.AgeRecipient()
	if f.cfg.Realms.Anchor == oldAnchor || f.cfg.AgeRecipient != want {
		t.Errorf("the rotating device did not pin the new anchor and recipient")
	}
	rec, err := f.recover("pw")
	if err != nil || !rec.Key.Equal(next) {
		t.Fatalf("the rotating device recovers: %v", err)
	}

	// The second device pinned the old anchor: it follows the handover.
	cfg := second.config(t)
	s, err := OpenRealmSet(cfg, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	rec, err = s.Recover(context.Background(), []byte("pw"))
	if err != nil || !rec.Key.Equal(next) {
		t.Fatalf("a device that pinned the old anchor: %v", err)
	}
	if cfg.Realms.Anchor != f.cfg.Realms.Anchor || cfg.AgeRecipient != want {
		t.Errorf("the second device did not follow the handover: anchor %s, recipient %s", cfg.Realms.Anchor, cfg.AgeRecipient)
	}

	// A device pinned to another anchor refuses the handed-over version.
	stranger := second.config(t)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	stranger.Realms.Anchor = hex.EncodeToString(pub)
	before := sum(f.evaluations())
	s, err = OpenRealmSet(stranger, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recover(context.Background(), []byte("pw")); err == nil || !strings.Contains(err.Error(), "a version your key did not make") {
		t.Fatalf("a device pinned to another anchor: %v", err)
	}
	if sum(f.evaluations()) != before {
		t.Fatal("a device evaluated a version its anchor did not hand over to")
	}
}
