package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/protocol"
)

// fieldSecrets are the device's keys, none of which may ever appear on the
// eMMC bus once the device is provisioned.
func fieldSecrets() map[string][]byte {
	keys := tos.DeriveKeys(&qemu.DevSealingKey, tos.ReleaseKeyID{})
	return map[string][]byte{
		"RPMB authentication key": keys.RPMB[:],
		"store sealing key":       keys.Store[:],
		"device key":              qemu.DevSealingKey[:],
	}
}

// An attacker on the eMMC bus of a provisioned device — the whole firmware
// path, OS and real applet, in-process — forges "key not programmed"
// (a blank eMMC swapped in), replays old RPMB responses, and fails writes,
// each time with the store image rolled back or not. The device must never
// put its RPMB key on the bus (with it the attacker plays the RPMB and rolls
// the store back), must never serve a rolled-back store, must keep
// answering with a clear "tampered" error, and must lose nothing once the
// bus is healthy again.
func TestRPMBKeyNeverCrossesTheBusInTheField(t *testing.T) {
	ctx := context.Background()
	tap := newBusTap()
	m := newMachine(t)
	m.bus = tap.attach

	// Provisioning, in a trusted place: the key crosses the bus once.
	if status := m.boot(); !strings.Contains(status, "serving") {
		t.Fatalf("provisioning boot: %q", status)
	}
	rpmbKey := fieldSecrets()["RPMB authentication key"]
	programs := 0
	for _, f := range tap.frames() {
		if binary.BigEndian.Uint16(f[storage.RPMBOffType:]) == storage.RPMBReqProgramKey {
			programs++
			if !bytes.Equal(f[storage.RPMBOffMAC:storage.RPMBOffData], rpmbKey) {
				t.Fatal("the key programmed is not the one the test expects")
			}
		}
	}
	if programs != 1 {
		t.Fatalf("provisioning sent %d key programming frames, want 1", programs)
	}
	tap.forget()

	pk := ed25519.NewKeyFromSeed(qemu.DevProvisioningSeed[:]).Public().(ed25519.PublicKey)
	id, err := testclient.FetchIdentity(ctx, m.rt, pk)
	if err != nil {
		t.Fatal(err)
	}
	alice := &testclient.Client{RoundTrip: m.rt, Identity: id, UserID: []byte("alice")}
	bob := &testclient.Client{RoundTrip: m.rt, Identity: id, UserID: []byte("bob")}
	aliceKey, bobKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if _, err := alice.Register(ctx, []byte("a"), aliceKey, 5); err != nil {
		t.Fatal(err)
	}
	// The attacker keeps this moment: the store image and the anchor it
	// saw written on the bus.
	tap.remember()
	oldStore := m.storeFile.Bytes()
	if _, err := bob.Register(ctx, []byte("b"), bobKey, 5); err != nil {
		t.Fatal(err)
	}
	current := m.storeFile.Bytes()

	attacks := []struct {
		name     string
		mode     tapMode
		rollBack bool // put the old store image back too
	}{
		{"blank eMMC answers, store rolled back", tapBlank, true},
		{"blank eMMC answers", tapBlank, false},
		{"replayed responses, store rolled back", tapReplay, true},
		{"replayed responses", tapReplay, false},
		{"failing writes", tapFailWrites, false},
	}
	for _, a := range attacks {
		m.stopTransprt()
		if a.rollBack {
			m.storeFile.SetBytes(oldStore)
		}
		tap.setMode(a.mode)
		status := m.boot()
		rt := m.rt
		if !strings.Contains(status, "REFUSING") {
			t.Errorf("%s: the vault serves: %q", a.name, status)
			// What a rolled-back vault shows: bob unknown again.
			c := &testclient.Client{RoundTrip: rt, Identity: id, UserID: []byte("bob")}
			if _, _, err := c.Login(ctx, []byte("b")); err != nil {
				t.Errorf("%s: rollback accepted: bob's login fails: %v", a.name, err)
			}
		} else {
			// The device keeps answering, each time with the reason.
			for range 2 {
				_, err := testclient.FetchIdentity(ctx, rt, pk)
				if !errors.Is(err, &protocol.Error{Code: protocol.CodeTampered}) || !strings.Contains(err.Error(), "RPMB") {
					t.Errorf("%s: request answered with %v, want a tampered error naming the RPMB", a.name, err)
				}
			}
		}

		// Healthy bus, current store: everything is there.
		m.stopTransprt()
		m.storeFile.SetBytes(current)
		tap.setMode(tapPass)
		if status := m.boot(); !strings.Contains(status, "serving") {
			t.Fatalf("%s: after the attack: %q", a.name, status)
		}
		for _, c := range []struct {
			cl       *testclient.Client
			pw, want []byte
		}{{alice, []byte("a"), aliceKey}, {bob, []byte("b"), bobKey}} {
			c.cl.RoundTrip = m.rt
			s, _, err := c.cl.Login(ctx, c.pw)
			if err != nil || !bytes.Equal(s.BackupKey, c.want) {
				t.Fatalf("%s: after the attack, %s: %v", a.name, c.cl.UserID, err)
			}
		}
		current = m.storeFile.Bytes()
	}

	for i, f := range tap.frames() {
		if binary.BigEndian.Uint16(f[storage.RPMBOffType:]) == storage.RPMBReqProgramKey {
			t.Errorf("frame %d: a key programming request in the field", i)
		}
		for name, secret := range fieldSecrets() {
			if bytes.Contains(f, secret) {
				t.Errorf("frame %d on the bus holds the %s", i, name)
			}
		}
	}
}
