package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// The status signs the firmware hash the vault was started with (what the
// boot chain measured), bound to the request's nonce: after a boot into
// other firmware on the same store, the same keys sign the new hash.
func TestStatusSignsTheRunningFirmware(t *testing.T) {
	fw1, fw2 := sha256.Sum256([]byte("release 1")), sha256.Sum256([]byte("release 2"))
	h := newHarness(t, Options{FirmwareHash: fw1[:]})
	status := func() *protocol.Status {
		t.Helper()
		req := protocol.NewStatusRequest()
		b, _ := protocol.Encode(protocol.TypeStatus, req)
		var reply protocol.StatusReply
		if err := protocol.Decode(h.v.handle(context.Background(), b), protocol.TypeStatus, &reply); err != nil {
			t.Fatal(err)
		}
		st, err := reply.Verify(h.v.Identity().SigningKey, req.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); !bytes.Equal(st.FirmwareHash, fw1[:]) {
		t.Fatalf("status firmware %x, want %x", st.FirmwareHash, fw1)
	}
	key := h.v.Identity().SigningKey
	h.opts.FirmwareHash = fw2[:]
	h.boot()
	if !bytes.Equal(h.v.Identity().SigningKey, key) {
		t.Fatal("a boot into other firmware changed the keys")
	}
	if st := status(); !bytes.Equal(st.FirmwareHash, fw2[:]) || !bytes.Equal(h.v.Identity().FirmwareHash, fw2[:]) {
		t.Fatalf("after the boot: status firmware %x, identity %x, want %x", st.FirmwareHash, h.v.Identity().FirmwareHash, fw2)
	}
}
