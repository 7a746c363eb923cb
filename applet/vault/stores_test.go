package vault

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/applet/vault/vaulttest/memstore"
	"github.com/cofferhsm/coffer/internal/storage"
)

// testStore is the store a harness runs its vault on, with the hooks the
// tests use: FailCommit and FlushLatency act at the moment a commit makes
// its changes durable, Crash cuts the power, Committed reads what a reboot
// would see. Its backend is one of storeKinds.
type testStore struct {
	// FailCommit, if set, is consulted where each commit makes its batch
	// durable; an error fails that commit. ErrPowerCut also cuts the
	// power of a device that has one: nothing is written until Crash.
	FailCommit func() error
	// FlushLatency is slept by every commit, as a device flush would.
	FlushLatency time.Duration

	backend testBackend
}

// testBackend is one kind of store under a testStore.
type testBackend interface {
	Store
	Crash()
	Committed(id []byte) ([]byte, bool)
	Stats() (commits, shreds int)
}

func (s *testStore) Get(id []byte) ([]byte, bool, error) { return s.backend.Get(id) }
func (s *testStore) Put(id, rec []byte) error            { return s.backend.Put(id, rec) }
func (s *testStore) Delete(id []byte) error              { return s.backend.Delete(id) }
func (s *testStore) Shred()                              { s.backend.Shred() }
func (s *testStore) Commit(ctx context.Context) (uint64, error) {
	return s.backend.Commit(ctx)
}

// Crash forgets everything staged and not committed, as a power cut does.
func (s *testStore) Crash() { s.backend.Crash() }

// Committed returns the committed value of id, ignoring staged changes.
func (s *testStore) Committed(id []byte) ([]byte, bool) { return s.backend.Committed(id) }

// Stats reports how many commits, and commits with a shred, succeeded.
func (s *testStore) Stats() (commits, shreds int) { return s.backend.Stats() }

// beforeDurable is what both backends run where a commit makes its batch
// durable.
func (s *testStore) beforeDurable() error {
	if f := s.FailCommit; f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	if s.FlushLatency > 0 {
		time.Sleep(s.FlushLatency)
	}
	return nil
}

// storeKind names a store the vault runs on and how to make an empty one.
type storeKind struct {
	name string
	new  func(t testing.TB, s *testStore) testBackend
}

// storeKinds are the stores every harness test runs on: the memory store
// (the plain test run) and the record store on a memory block device that
// simulates power cuts (TestOnTheRecordStore). A test passing on one and
// not the other means the memory store does not behave like the real one.
var storeKinds = []storeKind{
	{"memory", newMemoryBackend},
	{"record-store", newRecordStoreBackend},
}

// onRecordStore is the test that runs every harness test on the record
// store; newHarness picks the store kind from the test's name.
const onRecordStore = "TestOnTheRecordStore"

func storeKindFor(t testing.TB) storeKind {
	if strings.HasPrefix(t.Name(), onRecordStore+"/") {
		return storeKinds[1]
	}
	return storeKinds[0]
}

func newTestStore(t testing.TB) *testStore {
	s := &testStore{}
	s.backend = storeKindFor(t).new(t, s)
	return s
}

func newMemoryBackend(_ testing.TB, s *testStore) testBackend {
	m := memstore.New()
	m.FailCommit = s.beforeDurable
	return m
}

// recordStoreBackend is applet/store's Store on a CrashDevice and an
// emulated RPMB anchor: a power cut keeps a random part of the unflushed
// writes, and the store is reopened (verified) on what remains.
type recordStoreBackend struct {
	t      testing.TB
	dev    *storetest.CrashDevice
	rpmb   *storetest.MemRPMB
	rng    *rand.Rand
	before func() error // the testStore's hooks

	mu          sync.Mutex // guards the fields below and serialises Crash
	cur         atomic.Pointer[store.Store]
	pastCommits int // by the stores closed by earlier power cuts
}

var (
	recordSealingKey = [32]byte{'v', 'a', 'u', 'l', 't', '-', 's', 'e', 'a', 'l'}
	recordRPMBKey    = [32]byte{'v', 'a', 'u', 'l', 't', '-', 'r', 'p', 'm', 'b'}
)

func newRecordStoreBackend(t testing.TB, s *testStore) testBackend {
	t.Helper()
	dev := storetest.NewCrashDevice(1 << 14)
	anc, rpmb := storetest.NewMemAnchor(recordRPMBKey)
	opts := store.Options{SealingKey: recordSealingKey}
	if err := store.Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	b := &recordStoreBackend{t: t, dev: dev, rpmb: rpmb, rng: rand.New(rand.NewPCG(1, 2)), before: s.beforeDurable}
	b.open()
	t.Cleanup(func() { b.cur.Load().Close() })
	return b
}

func (b *recordStoreBackend) open() {
	b.t.Helper()
	dev := &hookedDevice{CrashDevice: b.dev, before: b.before}
	st, err := store.Open(dev, storage.NewRPMBAnchor(b.rpmb, recordRPMBKey, 0), store.Options{SealingKey: recordSealingKey})
	if err != nil {
		b.t.Fatalf("reopening the record store: %v", err)
	}
	b.cur.Store(st)
}

func (b *recordStoreBackend) Get(id []byte) ([]byte, bool, error) { return b.cur.Load().Get(id) }
func (b *recordStoreBackend) Put(id, rec []byte) error            { return b.cur.Load().Put(id, rec) }
func (b *recordStoreBackend) Delete(id []byte) error              { return b.cur.Load().Delete(id) }
func (b *recordStoreBackend) Shred()                              { b.cur.Load().Shred() }
func (b *recordStoreBackend) Commit(ctx context.Context) (uint64, error) {
	return b.cur.Load().Commit(ctx)
}

// Crash cuts the power: the store's RAM (what is staged) is lost, a random
// part of the unflushed writes reaches the medium, and a new store is opened
// on what remains, as a reboot would.
func (b *recordStoreBackend) Crash() {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.cur.Load()
	b.dev.PowerOff()
	old.Close() // commits nothing: the device is off
	b.pastCommits += int(old.Stats().Commits)
	b.dev.Crash(b.rng)
	b.open()
}

func (b *recordStoreBackend) Committed(id []byte) ([]byte, bool) {
	b.t.Helper()
	dev := b.dev.Clone()
	dev.CrashKeep(nil) // only what was flushed
	st, err := store.Open(dev, storage.NewRPMBAnchor(b.rpmb.Clone(), recordRPMBKey, 0), store.Options{SealingKey: recordSealingKey})
	if err != nil {
		b.t.Fatalf("opening a copy of the committed store: %v", err)
	}
	defer st.Close()
	rec, ok, err := st.Get(id)
	if err != nil {
		b.t.Fatalf("reading the committed store: %v", err)
	}
	return rec, ok
}

func (b *recordStoreBackend) Stats() (commits, shreds int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.cur.Load().Stats()
	return b.pastCommits + int(st.Commits), int(st.Epoch)
}

// hookedDevice runs the test store's hooks before each flush, the point at
// which a record-store commit makes its batch durable.
type hookedDevice struct {
	*storetest.CrashDevice
	before func() error
}

func (d *hookedDevice) Flush() error {
	if err := d.before(); err != nil {
		if errors.Is(err, memstore.ErrPowerCut) {
			d.PowerOff()
		}
		return err
	}
	return d.CrashDevice.Flush()
}
