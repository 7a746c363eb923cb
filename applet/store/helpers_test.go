package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
)

var (
	testSealing = [32]byte{'s', 'e', 'a', 'l'}
	testAuthKey = [32]byte{'r', 'p', 'm', 'b'}
)

func testOpts(maxEntries int) Options {
	return Options{SealingKey: testSealing, maxEntries: maxEntries}
}

// newMemStore formats and opens a store on a fresh memory device and RPMB.
func newMemStore(t testing.TB, sectors uint64, opts Options) (*Store, *storetest.MemDevice, *storage.RPMBAnchor, *storetest.MemRPMB) {
	t.Helper()
	dev := storetest.NewMemDevice(sectors)
	anc, rp := storetest.NewMemAnchor(testAuthKey)
	if err := Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dev, anc, rp
}

func commit(t testing.TB, s *Store) uint64 {
	t.Helper()
	seq, err := s.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func id(i int) []byte { return []byte(fmt.Sprintf("user-%04d", i)) }

// model is the expected content of a store: id -> record.
type model map[string]string

func (m model) clone() model { return maps.Clone(m) }

func (m model) apply(changes map[string]*string) model {
	n := m.clone()
	for k, v := range changes {
		if v == nil {
			delete(n, k)
		} else {
			n[k] = *v
		}
	}
	return n
}

// check compares the store with m over the ids in universe and the record
// count; it returns an error rather than failing so that callers can report
// the crash scenario.
func (m model) check(s *Store, universe []string) error {
	for _, k := range universe {
		rec, ok, err := s.Get([]byte(k))
		if err != nil {
			return fmt.Errorf("Get(%s): %w", k, err)
		}
		want, wok := m[k]
		if ok != wok || (ok && string(rec) != want) {
			return fmt.Errorf("Get(%s) = %q, %v; want %q, %v", k, rec, ok, want, wok)
		}
	}
	if n := s.Stats().Records; n != uint64(len(m)) {
		return fmt.Errorf("store has %d records, want %d", n, len(m))
	}
	return nil
}

func (m model) String() string {
	keys := slices.Sorted(maps.Keys(m))
	return fmt.Sprint(keys)
}

func isTampered(err error) bool {
	var t interface{ Tampered() bool }
	return errors.Is(err, storage.ErrTampered) && errors.As(err, &t) && t.Tampered()
}
