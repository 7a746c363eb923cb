package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	taruntime "github.com/cofferhsm/coffer/applet/runtime"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
	"github.com/cofferhsm/coffer/protocol"
)

// machine is the QEMU board's storage with the OS's portable core, and the
// applet running against it in-process.
type machine struct {
	t            *testing.T
	storeFile    *emulate.MemFile
	anchorFile   *emulate.MemFile
	fuseFile     *emulate.MemFile
	relay        *tos.Relay
	ready        chan string
	svc          *tos.Service
	client       *protocol.StreamClient
	stopTransprt func()
	// bus, if set, stands between the OS and the RPMB partition (an
	// attacker on the eMMC bus).
	bus func(real storage.RPMBTransport) storage.RPMBTransport
}

const testSectors = 8192

func newMachine(t *testing.T) *machine {
	return &machine{t: t, storeFile: &emulate.MemFile{}, anchorFile: &emulate.MemFile{}, fuseFile: &emulate.MemFile{}}
}

// bootOS does what the Trusted OS (firmware/os) does at power on, for the
// QEMU board: derive the per-purpose keys from the device key, check the
// RPMB partition part against the fuse (provisioning it on the first boot),
// and prepare the applet's services on dev. Console lines go to the test log.
func bootOS(t *testing.T, dev storage.Device, part storage.RPMBTransport, fuse tos.Fuse) *tos.Service {
	keys := tos.DeriveKeys(&qemu.DevSealingKey, tos.ReleaseKeyID{})
	defer keys.Wipe()
	anchor, _ := tos.OpenAnchor(tos.RPMBSetup{
		Transport:        part,
		Key:              keys.RPMB,
		Fuse:             fuse,
		InsecureEmulator: true, // QEMU: emulated and flagged insecure
		Log:              func(line string) { t.Log("os:", line) },
	})
	return &tos.Service{
		Config: api.Config{
			Flags:               api.FlagInsecure | api.FlagEmulated | api.FlagDevProvisioning,
			MaxLimit:            protocol.DefaultLimit,
			Sectors:             dev.Sectors(),
			StoreKey:            keys.Store,
			DevProvisioningSeed: qemu.DevProvisioningSeed,
			Board:               "test",
		},
		Device:  dev,
		Anchor:  anchor,
		Rand:    cryptoRand{},
		Console: func(line string) { t.Log("applet:", line) },
	}
}

// boot starts the OS core and the applet, and waits for ready.
func (m *machine) boot() string {
	t := m.t
	dev, err := emulate.NewFileDevice(m.storeFile, testSectors)
	if err != nil {
		t.Fatal(err)
	}
	rpmb, err := qemu.OpenEmulatedRPMB(m.anchorFile)
	if err != nil {
		t.Fatal(err)
	}
	var part storage.RPMBTransport = rpmb
	if m.bus != nil {
		part = m.bus(rpmb)
	}
	m.relay = tos.NewRelay()
	m.ready = make(chan string, 1)
	m.svc = bootOS(t, dev, part, qemu.NewFileFuse(m.fuseFile))
	m.svc.Relay = m.relay
	m.svc.Ready = func(s string) { m.ready <- s }
	m.svc.MaxWait = 50 * time.Millisecond
	m.svc.Start()
	// Once the machine stops, its applet's calls fail as they would in a
	// stopped applet: its goroutines (they leak) never touch the storage
	// of the next boot.
	var stopped atomic.Bool
	svc := m.svc
	o := taruntime.NewOS(func(op uint32, buf []byte) int32 {
		if stopped.Load() {
			return int32(api.ECLOSED)
		}
		r, _ := svc.Call(op, tos.SliceBuffer(buf))
		return r
	})
	go run(context.Background(), o)

	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	go protocol.ServeStream(ctx, a, m.relay.Handle, 8)
	m.client = protocol.NewStreamClient(b)
	m.stopTransprt = func() { stopped.Store(true); cancel(); m.client.Close(); a.Close() }
	t.Cleanup(m.stopTransprt)
	select {
	case s := <-m.ready:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("applet not ready")
	}
	return ""
}

func (m *machine) rt(ctx context.Context, req []byte) ([]byte, error) {
	return m.client.RoundTrip(ctx, req)
}

type cryptoRand struct{}

func (cryptoRand) Read(p []byte) (int, error) { return randRead(p) }

func TestAppletServesVaultThroughOSCalls(t *testing.T) {
	ctx := context.Background()
	m := newMachine(t)
	status := m.boot()
	if !bytes.Contains([]byte(status), []byte("new store")) || !bytes.Contains([]byte(status), []byte("INSECURE")) {
		t.Fatalf("status %q", status)
	}
	pk := ed25519.NewKeyFromSeed(qemu.DevProvisioningSeed[:]).Public().(ed25519.PublicKey)
	id, err := testclient.FetchIdentity(ctx, m.rt, pk)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Insecure {
		t.Fatal("identity not flagged insecure")
	}
	alice := &testclient.Client{RoundTrip: m.rt, Identity: id, UserID: []byte("alice")}
	key := bytes.Repeat([]byte{7}, 32)
	if _, err := alice.Register(ctx, []byte("right"), key, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.Login(ctx, []byte("wrong")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	s, _, err := alice.Login(ctx, []byte("right"))
	if err != nil || !bytes.Equal(s.BackupKey, key) {
		t.Fatalf("login: %v", err)
	}
	if err := s.Confirm(ctx); err != nil {
		t.Fatalf("confirming the login: %v", err)
	}
	old := m.storeFile.Bytes()
	if _, _, err := alice.Login(ctx, []byte("wrong")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}

	// Restart on the same files: the user is still there.
	m.stopTransprt()
	m.boot()
	id2, err := testclient.FetchIdentity(ctx, m.rt, pk)
	if err != nil || !bytes.Equal(id2.SigningKey, id.SigningKey) {
		t.Fatalf("identity after restart: %v", err)
	}
	alice.RoundTrip = m.rt
	_, r, err := alice.Login(ctx, []byte("wrong"))
	if !errors.Is(err, testclient.ErrWrongPassword) || r == nil || r.FailedSinceSuccess != 1 {
		t.Fatalf("after restart: %v, receipt %+v", err, r)
	}

	// An older store under the newer anchor: service refused.
	m.stopTransprt()
	m.storeFile.SetBytes(old)
	status = m.boot()
	if !bytes.Contains([]byte(status), []byte("REFUSING")) {
		t.Fatalf("status after rollback %q", status)
	}
	_, err = testclient.FetchIdentity(ctx, m.rt, pk)
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeTampered}) {
		t.Fatalf("after rollback: %v, want tampered", err)
	}
}
