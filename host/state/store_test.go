package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/host/state/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A factory opens a fresh, migrated store for a test, and peer opens
// another handle on the same state: another host's connection for the
// shared stores, another process's for SQLite, the same store for Memory.
type factory func(t *testing.T) (st Store, peer func() Store)

func openDSN(t testing.TB, dsn string) (Store, func() Store) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	open := func() Store {
		st, err := Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	return open(), open
}

func sqliteDSN(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "state.db") }

var factories = map[string]factory{
	"memory": func(t *testing.T) (Store, func() Store) {
		m := NewMemory()
		return m, func() Store { return m }
	},
	"sqlite":   func(t *testing.T) (Store, func() Store) { return openDSN(t, sqliteDSN(t)) },
	"postgres": func(t *testing.T) (Store, func() Store) { return openDSN(t, pgtest.DSN(t)) },
}

// forEach runs test against every store.
func forEach(t *testing.T, test func(t *testing.T, st Store, peer func() Store)) {
	for _, name := range []string{"memory", "sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			st, peer := factories[name](t)
			test(t, st, peer)
		})
	}
}

var ctx = context.Background()

func account(i int) Account {
	return Account{
		Name:        fmt.Sprintf("user%d", i),
		UserID:      []byte(fmt.Sprintf("uid-%d", i)),
		TokenSHA256: sha256.Sum256([]byte(fmt.Sprintf("token-%d", i))),
		Created:     time.Unix(1_700_000_000, int64(i)),
	}
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func device(t *testing.T, st Store, name string) Device {
	t.Helper()
	d, err := st.Device(ctx, name)
	mustOK(t, err)
	return d
}

func sameAccount(t *testing.T, got, want Account) {
	t.Helper()
	if got.Name != want.Name || string(got.UserID) != string(want.UserID) || got.TokenSHA256 != want.TokenSHA256 ||
		got.Device != want.Device || !got.Created.Equal(want.Created) {
		t.Fatalf("account %+v, want %+v", got, want)
	}
}

func TestAccounts(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		for i := range 5 {
			mustOK(t, st.AddAccount(ctx, account(i)))
		}
		a, err := st.AccountByToken(ctx, account(3).TokenSHA256)
		mustOK(t, err)
		sameAccount(t, a, account(3))
		a, err = st.AccountByName(ctx, "user4")
		mustOK(t, err)
		sameAccount(t, a, account(4))
		_, err = st.AccountByToken(ctx, sha256.Sum256([]byte("nobody's")))
		wantErr(t, err, ErrNotFound)
		_, err = st.AccountByName(ctx, "user9")
		wantErr(t, err, ErrNotFound)

		// A name, user id or token hash that is taken is refused, and
		// nothing of the refused account is stored.
		for _, clash := range []func(a *Account){
			func(a *Account) { a.Name = "user1" },
			func(a *Account) { a.UserID = account(1).UserID },
			func(a *Account) { a.TokenSHA256 = account(1).TokenSHA256 },
		} {
			a := account(7)
			clash(&a)
			wantErr(t, st.AddAccount(ctx, a), ErrExists)
		}
		_, err = st.AccountByToken(ctx, account(7).TokenSHA256)
		wantErr(t, err, ErrNotFound)
		_, err = st.AccountByName(ctx, "user7")
		wantErr(t, err, ErrNotFound)
		bad := account(8)
		bad.Name = "-x"
		if st.AddAccount(ctx, bad) == nil {
			t.Fatal("a bad name was stored")
		}
		bad = account(8)
		bad.Device = "nowhere"
		wantErr(t, st.AddAccount(ctx, bad), ErrNotFound)
		_, err = st.AccountByName(ctx, "user8")
		wantErr(t, err, ErrNotFound)

		// Paging, in name order.
		page, err := st.ListAccounts(ctx, "user1", 2)
		mustOK(t, err)
		if len(page) != 2 || page[0].Name != "user2" || page[1].Name != "user3" {
			t.Fatalf("page after user1: %v", page)
		}
		all, err := st.ListAccounts(ctx, "", -1)
		mustOK(t, err)
		if len(all) != 5 || all[0].Name != "user0" {
			t.Fatalf("all: %d accounts", len(all))
		}
		none, err := st.ListAccounts(ctx, "", 0)
		mustOK(t, err)
		if len(none) != 0 {
			t.Fatalf("limit 0: %d accounts", len(none))
		}

		mustOK(t, st.RemoveAccount(ctx, "user2"))
		wantErr(t, st.RemoveAccount(ctx, "user2"), ErrNotFound)
		_, err = st.AccountByToken(ctx, account(2).TokenSHA256)
		wantErr(t, err, ErrNotFound)
		// Its user id and token are free again.
		mustOK(t, st.AddAccount(ctx, account(2)))
	})
}

// Names page in byte order, whatever the database's collation.
func TestListOrder(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		names := []string{"b", "B", "a.b", "a", "A", "a-b", "Z9", "_x"[1:]}
		for i, n := range names {
			a := account(i)
			a.Name = n
			mustOK(t, st.AddAccount(ctx, a))
		}
		var got []string
		after := ""
		for {
			page, err := st.ListAccounts(ctx, after, 3)
			mustOK(t, err)
			if len(page) == 0 {
				break
			}
			for _, a := range page {
				got = append(got, a.Name)
			}
			after = page[len(page)-1].Name
		}
		want := []string{"A", "B", "Z9", "a", "a-b", "a.b", "b", "x"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("order %v, want %v", got, want)
		}
	})
}

func TestDevices(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		mustOK(t, st.RegisterDevice(ctx, "d2", "h1"))
		mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
		wantErr(t, st.RegisterDevice(ctx, "d1", "h2"), ErrExists)
		if st.RegisterDevice(ctx, "bad name", "h1") == nil {
			t.Fatal("a bad device name was registered")
		}
		seen := time.Unix(1_800_000_000, 123)
		mustOK(t, st.ReportDevice(ctx, "d1", Report{Healthy: true, Seen: seen, AnchorWrites: 42, Records: 1<<63 + 1, RecordCapacity: 1<<63 + 9}))
		// An unhealthy report keeps the counts of the last signed status.
		mustOK(t, st.ReportDevice(ctx, "d1", Report{Seen: seen.Add(time.Second), AnchorWrites: 7, Records: 1, RecordCapacity: 2}))
		wantErr(t, st.ReportDevice(ctx, "d9", Report{Healthy: true, Seen: seen, AnchorWrites: 1}), ErrNotFound)
		mustOK(t, st.SetDeviceLimits(ctx, "d1", 1<<63+5, 1000))
		wantErr(t, st.SetDeviceLimits(ctx, "d9", 1, 1), ErrNotFound)
		mustOK(t, st.SetDeviceState(ctx, "d1", Draining))
		// Registering again keeps state, limits and health.
		mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
		d := device(t, st, "d1")
		want := Device{Name: "d1", Host: "h1", State: Draining, Capacity: 1<<63 + 5, AnchorBudget: 1000, Healthy: false, AnchorWrites: 42, Records: 1<<63 + 1, RecordCapacity: 1<<63 + 9}
		if d.Seen.Equal(seen.Add(time.Second)) {
			d.Seen = time.Time{}
		}
		if d != want {
			t.Fatalf("device %+v, want %+v", d, want)
		}
		ds, err := st.Devices(ctx)
		mustOK(t, err)
		if len(ds) != 2 || ds[0].Name != "d1" || ds[1].Name != "d2" || ds[1].State != Active || !ds[1].Seen.IsZero() {
			t.Fatalf("devices %+v", ds)
		}
		_, err = st.Device(ctx, "d9")
		wantErr(t, err, ErrNotFound)
		wantErr(t, st.SetDeviceState(ctx, "d9", Draining), ErrNotFound)
		wantErr(t, st.SetDeviceState(ctx, "d1", "broken"), ErrDeviceState)

		mustOK(t, st.RegisterHost(ctx, Host{Name: "h2", PeerURL: "https://h2:1", Seen: seen}, time.Minute))
		mustOK(t, st.RegisterHost(ctx, Host{Name: "h1", PeerURL: "https://h1:1", Seen: seen}, time.Minute))
		mustOK(t, st.RegisterHost(ctx, Host{Name: "h1", PeerURL: "https://h1:2", Seen: seen.Add(time.Hour)}, time.Minute))
		if st.RegisterHost(ctx, Host{Name: ""}, time.Minute) == nil {
			t.Fatal("a host without a name was registered")
		}
		hs, err := st.Hosts(ctx)
		mustOK(t, err)
		if len(hs) != 2 || hs[0].Name != "h1" || hs[0].PeerURL != "https://h1:2" || !hs[0].Seen.Equal(seen.Add(time.Hour)) || hs[1].Name != "h2" {
			t.Fatalf("hosts %+v", hs)
		}
	})
}

// A host name is held by one process at a time: another instance is
// refused while the holder's heartbeat is fresh, and takes over once it is
// stale. A removed host's entry comes back only with another peer key (or,
// keyless, as another process); its own heartbeat cannot revive it.
func TestHostInstancesAndRemoval(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		t0 := time.Unix(1_800_000_000, 0)
		key1, key2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		fresh := 45 * time.Second
		a := Host{Name: "node1", PeerURL: "https://node1:1", Seen: t0, Instance: "aaaa", PeerKey: key1}
		mustOK(t, st.RegisterHost(ctx, a, fresh))
		b := Host{Name: "node1", PeerURL: "https://node1:2", Seen: t0.Add(44 * time.Second), Instance: "bbbb", PeerKey: key1}
		wantErr(t, other.RegisterHost(ctx, b, fresh), ErrExists)
		// The holder's heartbeat goes on; the entry is still its own.
		a.Seen = t0.Add(30 * time.Second)
		mustOK(t, st.RegisterHost(ctx, a, fresh))
		hs, err := other.Hosts(ctx)
		mustOK(t, err)
		if len(hs) != 1 || hs[0].Instance != "aaaa" || hs[0].PeerURL != "https://node1:1" || !bytes.Equal(hs[0].PeerKey, key1) || hs[0].Removed {
			t.Fatalf("hosts %+v", hs)
		}
		// Stale: another process takes the name over, and the old one's
		// late heartbeat is refused.
		b.Seen = a.Seen.Add(fresh)
		mustOK(t, other.RegisterHost(ctx, b, fresh))
		a.Seen = b.Seen.Add(time.Second)
		wantErr(t, st.RegisterHost(ctx, a, fresh), ErrExists)
		// A keyless host keeps no key.
		mustOK(t, st.RegisterHost(ctx, Host{Name: "solo", Seen: t0, Instance: "s1"}, fresh))

		wantErr(t, st.RemoveHost(ctx, "nobody"), ErrNotFound)
		mustOK(t, st.RemoveHost(ctx, "node1"))
		mustOK(t, st.RemoveHost(ctx, "solo"))
		hs, err = other.Hosts(ctx)
		mustOK(t, err)
		if len(hs) != 2 || !hs[0].Removed || hs[1].PeerKey != nil || !hs[1].Removed {
			t.Fatalf("hosts after removal %+v", hs)
		}
		// The removed process's heartbeat, and a new process with the
		// revoked key, are refused; a new key brings the host back.
		b.Seen = b.Seen.Add(time.Hour)
		wantErr(t, other.RegisterHost(ctx, b, fresh), ErrHostRemoved)
		wantErr(t, st.RegisterHost(ctx, Host{Name: "node1", Seen: b.Seen, Instance: "cccc", PeerKey: key1}, fresh), ErrHostRemoved)
		wantErr(t, st.RegisterHost(ctx, Host{Name: "solo", Seen: b.Seen, Instance: "s1"}, fresh), ErrHostRemoved)
		mustOK(t, st.RegisterHost(ctx, Host{Name: "node1", Seen: b.Seen, Instance: "cccc", PeerKey: key2}, fresh))
		mustOK(t, st.RegisterHost(ctx, Host{Name: "solo", Seen: b.Seen, Instance: "s2"}, fresh))
		hs, err = other.Hosts(ctx)
		mustOK(t, err)
		if hs[0].Removed || !bytes.Equal(hs[0].PeerKey, key2) || hs[0].Instance != "cccc" || hs[1].Removed {
			t.Fatalf("hosts after re-registration %+v", hs)
		}
		if st.RegisterHost(ctx, Host{Name: "x", Seen: t0, PeerKey: []byte{1, 2}}, fresh) == nil {
			t.Fatal("a peer key hash of 2 bytes was registered")
		}
	})
}

// Two processes starting under one name at once: exactly one holds it.
func TestRegisterHostRace(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		const n = 8
		errs := make(chan error, n)
		now := time.Now()
		for i := range n {
			s := st
			if i%2 == 1 {
				s = peer()
			}
			go func() {
				errs <- s.RegisterHost(ctx, Host{Name: "node1", Seen: now, Instance: fmt.Sprint("i", i)}, time.Minute)
			}()
		}
		ok := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrExists):
				t.Fatal(err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d processes hold node1", ok)
		}
	})
}

func TestPlacement(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		mustOK(t, st.RegisterDevice(ctx, "d1", "h"))
		mustOK(t, st.RegisterDevice(ctx, "d2", "h"))
		for i := range 4 {
			mustOK(t, st.AddAccount(ctx, account(i)))
		}
		_, err := st.Place(ctx, "user9", "d1")
		wantErr(t, err, ErrNotFound)
		_, err = st.Place(ctx, "user0", "d9")
		wantErr(t, err, ErrNotFound)
		got, err := st.Place(ctx, "user0", "d1")
		mustOK(t, err)
		// Placing again returns the first device and counts nothing.
		again, err := st.Place(ctx, "user0", "d2")
		mustOK(t, err)
		if got != "d1" || again != "d1" {
			t.Fatalf("placed on %q then %q, want d1 twice", got, again)
		}
		_, err = st.Place(ctx, "user1", "d1")
		mustOK(t, err)
		a := account(4)
		a.Device = "d2"
		mustOK(t, st.AddAccount(ctx, a))
		if n1, n2 := device(t, st, "d1").Accounts, device(t, st, "d2").Accounts; n1 != 2 || n2 != 1 {
			t.Fatalf("counts d1 %d d2 %d, want 2 1", n1, n2)
		}
		if a, _ := st.AccountByName(ctx, "user1"); a.Device != "d1" {
			t.Fatalf("user1 on %q", a.Device)
		}

		// A draining device takes no new account but keeps its own.
		mustOK(t, st.SetDeviceState(ctx, "d1", Draining))
		_, err = st.Place(ctx, "user2", "d1")
		wantErr(t, err, ErrDeviceState)
		a = account(5)
		a.Device = "d1"
		wantErr(t, st.AddAccount(ctx, a), ErrDeviceState)
		_, err = st.AccountByName(ctx, "user5")
		wantErr(t, err, ErrNotFound)

		// Retiring with accounts left is refused; RemoveAccount and
		// Unplace release the count; then it may retire.
		wantErr(t, st.SetDeviceState(ctx, "d1", Retired), ErrDeviceState)
		mustOK(t, st.RemoveAccount(ctx, "user0"))
		if n := device(t, st, "d1").Accounts; n != 1 {
			t.Fatalf("d1 holds %d after a removal, want 1", n)
		}
		wantErr(t, st.SetDeviceState(ctx, "d1", Retired), ErrDeviceState)
		mustOK(t, st.Unplace(ctx, "user1"))
		mustOK(t, st.Unplace(ctx, "user1"))
		wantErr(t, st.Unplace(ctx, "user9"), ErrNotFound)
		if n := device(t, st, "d1").Accounts; n != 0 {
			t.Fatalf("d1 holds %d after unplacing, want 0", n)
		}
		if a, _ := st.AccountByName(ctx, "user1"); a.Device != "" {
			t.Fatalf("user1 still on %q", a.Device)
		}
		mustOK(t, st.SetDeviceState(ctx, "d1", Retired))

		// A retired device is never revived nor placed on.
		wantErr(t, st.SetDeviceState(ctx, "d1", Active), ErrDeviceState)
		wantErr(t, st.SetDeviceState(ctx, "d1", Draining), ErrDeviceState)
		_, err = st.Place(ctx, "user1", "d1")
		wantErr(t, err, ErrDeviceState)
		if d := device(t, st, "d1"); d.State != Retired || d.Accounts != 0 {
			t.Fatalf("d1 %+v", d)
		}
		got, err = st.Place(ctx, "user1", "d2")
		mustOK(t, err)
		if got != "d2" || device(t, st, "d2").Accounts != 2 {
			t.Fatalf("user1 on %q, d2 holds %d", got, device(t, st, "d2").Accounts)
		}
	})
}

// Two hosts place the same accounts at once, each on its own device: each
// account ends on one device, which both were told, counted once.
func TestPlaceRace(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
		mustOK(t, other.RegisterDevice(ctx, "d2", "h2"))
		const n = 40
		for i := range n {
			mustOK(t, st.AddAccount(ctx, account(i)))
		}
		// Each account is placed by both hosts at once, released
		// together.
		var got [n][2]string
		for i := range n {
			start := make(chan struct{})
			var wg sync.WaitGroup
			for h, s := range []Store{st, other} {
				dev := []string{"d1", "d2"}[h]
				wg.Go(func() {
					<-start
					d, err := s.Place(ctx, account(i).Name, dev)
					if err != nil {
						t.Error(err)
					}
					got[i][h] = d
				})
			}
			close(start)
			wg.Wait()
		}
		var on [2]uint64
		for i := range n {
			a, err := st.AccountByName(ctx, account(i).Name)
			mustOK(t, err)
			if got[i][0] != a.Device || got[i][1] != a.Device {
				t.Fatalf("%s: hosts were told %q and %q, it is on %q", a.Name, got[i][0], got[i][1], a.Device)
			}
			on[map[string]int{"d1": 0, "d2": 1}[a.Device]]++
		}
		if c1, c2 := device(t, st, "d1").Accounts, device(t, st, "d2").Accounts; c1 != on[0] || c2 != on[1] {
			t.Fatalf("counts d1 %d d2 %d, placed %d %d", c1, c2, on[0], on[1])
		}
	})
}

// A host retires a device while another places an account on it, both at
// once: either the placement or the retirement wins, never both (a retired
// device holding an account).
func TestRetireRace(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		const n = 30
		for i := range n {
			dev := fmt.Sprintf("d%d", i)
			mustOK(t, st.RegisterDevice(ctx, dev, "h1"))
			mustOK(t, st.AddAccount(ctx, account(i)))
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				<-start
				other.Place(ctx, account(i).Name, dev)
			})
			wg.Go(func() {
				<-start
				st.SetDeviceState(ctx, dev, Retired)
			})
			close(start)
			wg.Wait()
			a, err := st.AccountByName(ctx, account(i).Name)
			mustOK(t, err)
			d := device(t, st, dev)
			var on uint64
			if a.Device == dev {
				on = 1
			}
			if d.Accounts != on || (d.State == Retired) == (on == 1) {
				t.Fatalf("%s %s counts %d, holds %d", dev, d.State, d.Accounts, on)
			}
		}
	})
}

// Many takes at one instant on a bucket of 5, from two hosts: exactly 5
// succeed.
func TestTakeRace(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		now := time.Unix(1_800_000_000, 0)
		for round := range 5 {
			key := fmt.Sprintf("login:alice%d", round)
			var mu sync.Mutex
			granted := 0
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range 16 {
				s := []Store{st, other}[i%2]
				wg.Go(func() {
					<-start
					ok, wait, err := s.Take(ctx, key, 1, 5, now)
					if err != nil {
						t.Error(err)
						return
					}
					if !ok && wait <= 0 {
						t.Errorf("refused with wait %v", wait)
					}
					if ok {
						mu.Lock()
						granted++
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if granted != 5 {
				t.Fatalf("%d takes granted from a bucket of 5", granted)
			}
		}
		// Another key has its own bucket; rate 0 is no limit.
		if ok, _, _ := st.Take(ctx, "login:bob", 1, 5, now); !ok {
			t.Fatal("bob's first take refused")
		}
		if ok, _, _ := st.Take(ctx, "login:alice0", 0, 5, now); !ok {
			t.Fatal("rate 0 refused")
		}
	})
}

// A clock that goes back refills nothing, and does not move the bucket's
// time back either (which would refill later).
func TestTakeClockBack(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		now := time.Unix(1_800_000_000, 0)
		take := func(at time.Time) (bool, time.Duration) {
			ok, wait, err := st.Take(ctx, "k", 1, 2, at)
			mustOK(t, err)
			return ok, wait
		}
		take(now)
		take(now)
		if ok, wait := take(now); ok || wait != time.Second {
			t.Fatalf("third take: %v, wait %v; want refused, 1s", ok, wait)
		}
		if ok, _ := take(now.Add(-time.Hour)); ok {
			t.Fatal("an hour back refilled the bucket")
		}
		if ok, _ := take(now.Add(500 * time.Millisecond)); ok {
			t.Fatal("half a second after the last refill granted a token at 1/s")
		}
		if ok, _ := take(now.Add(1100 * time.Millisecond)); !ok {
			t.Fatal("1.1 s after the last refill refused")
		}
	})
}

func TestImportAccountsJSON(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		dir := t.TempDir()
		file := filepath.Join(dir, "accounts.json")
		tokA, tokB := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
		write := func(s string) {
			mustOK(t, os.WriteFile(file, []byte(s), 0o600))
		}
		write(fmt.Sprintf(`{"version":1,"accounts":[
			{"name":"alice","user_id":"00112233445566778899aabbccddeeff","device":"vault-1","token_sha256":"%x","created":"2026-01-02T03:04:05.123456789Z"},
			{"name":"bob","user_id":"ff","token_sha256":"%x","created":"2026-01-03T00:00:00Z"}]}`, tokA, tokB))
		n, err := ImportAccountsJSON(ctx, st, file, "h", "vault-1")
		mustOK(t, err)
		if n != 2 {
			t.Fatalf("imported %d, want 2", n)
		}
		a, err := st.AccountByToken(ctx, tokA)
		mustOK(t, err)
		sameAccount(t, a, Account{Name: "alice", UserID: []byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
			TokenSHA256: tokA, Device: "vault-1", Created: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)})
		// vault-1 registered on h by the import; bob, on no device, put there.
		if d := device(t, st, "vault-1"); d.Accounts != 2 || d.Host != "h" {
			t.Fatalf("vault-1 after the import: %+v", d)
		}
		if b, err := st.AccountByToken(ctx, tokB); err != nil || b.Device != "vault-1" {
			t.Fatalf("bob on %q (%v), want vault-1", b.Device, err)
		}
		// Again: nothing new, no error.
		n, err = ImportAccountsJSON(ctx, st, file, "h", "vault-1")
		mustOK(t, err)
		if n != 0 || device(t, st, "vault-1").Accounts != 2 {
			t.Fatalf("second import added %d", n)
		}
		// An account that clashes with a stored one is named.
		write(fmt.Sprintf(`{"version":1,"accounts":[{"name":"carol","user_id":"ff","token_sha256":"%x","created":"2026-01-03T00:00:00Z"}]}`, sha256.Sum256([]byte("c"))))
		_, err = ImportAccountsJSON(ctx, st, file, "h", "vault-1")
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), `"carol"`) {
			t.Fatalf("clash: %v", err)
		}
		write(fmt.Sprintf(`{"version":1,"accounts":[{"name":"bob","user_id":"fe","token_sha256":"%x","created":"2026-01-03T00:00:00Z"}]}`, tokB))
		_, err = ImportAccountsJSON(ctx, st, file, "h", "vault-1")
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), `"bob"`) {
			t.Fatalf("clash on bob: %v", err)
		}
		// What cofferd's reader refused is refused.
		for _, bad := range []string{
			`{"version":2,"accounts":[]}`,
			`{"version":1,"accounts":[],"extra":1}`,
			`{"version":1,"accounts":[{"name":"-x","user_id":"ff","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"}]}`,
			`{"version":1,"accounts":[{"name":"x","user_id":"","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"}]}`,
			`{"version":1,"accounts":[{"name":"x","user_id":"ff","token_sha256":"00"}]}`,
			`{"version":1,"accounts":[{"name":"x","user_id":"zz","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"}]}`,
			`{"version":1,"accounts":[{"name":"x","user_id":"f1","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"},{"name":"x","user_id":"f2","token_sha256":"` + fmt.Sprintf("%x", tokB) + `"}]}`,
			`{"version":1,"accounts":[{"name":"x","user_id":"f1","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"},{"name":"y","user_id":"f1","token_sha256":"` + fmt.Sprintf("%x", tokB) + `"}]}`,
			`{"version":1,"accounts":[{"name":"x","user_id":"f1","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"},{"name":"y","user_id":"f2","token_sha256":"` + fmt.Sprintf("%x", tokA) + `"}]}`,
		} {
			write(bad)
			if _, err := ImportAccountsJSON(ctx, st, file, "h", "vault-1"); err == nil || errors.Is(err, ErrExists) {
				t.Fatalf("%s: %v", bad, err)
			}
		}
		if _, err := ImportAccountsJSON(ctx, st, filepath.Join(dir, "missing.json"), "h", "vault-1"); err == nil {
			t.Fatal("a missing file imported")
		}
		all, _ := st.ListAccounts(ctx, "", -1)
		if len(all) != 2 {
			t.Fatalf("%d accounts after the refused imports, want 2", len(all))
		}
	})
}

// UnplaceFrom empties a drained device in batches, whatever its size, and
// touches no other device's accounts; an active device is refused (new
// accounts would keep arriving).
func TestUnplaceFrom(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
		mustOK(t, st.RegisterDevice(ctx, "d2", "h1"))
		const n = 25
		for i := range n {
			mustOK(t, st.AddAccount(ctx, account(i)))
			_, err := st.Place(ctx, account(i).Name, []string{"d1", "d2"}[i%5/4]) // 20 on d1, 5 on d2
			mustOK(t, err)
		}
		_, _, err := st.UnplaceFrom(ctx, "d1", "", 10)
		wantErr(t, err, ErrDeviceState)
		_, _, err = st.UnplaceFrom(ctx, "d9", "", 10)
		wantErr(t, err, ErrNotFound)
		mustOK(t, st.SetDeviceState(ctx, "d1", Draining))
		if _, _, err := st.UnplaceFrom(ctx, "d1", "", 0); err == nil {
			t.Fatal("unplaced 0 at a time")
		}
		var batches []int
		var cursors []string
		for after := ""; ; {
			k, next, err := st.UnplaceFrom(ctx, "d1", after, 7)
			mustOK(t, err)
			batches, cursors = append(batches, k), append(cursors, next)
			if after = next; next == "" {
				break
			}
		}
		// The cursors are the 7th, 14th and last of d1's accounts by
		// name; only the empty batch after them ends the walk.
		var on1 []string
		for i := range n {
			if i%5 < 4 {
				on1 = append(on1, account(i).Name)
			}
		}
		slices.Sort(on1)
		want := []string{on1[6], on1[13], on1[19], ""}
		if !slices.Equal(batches, []int{7, 7, 6, 0}) || !slices.Equal(cursors, want) {
			t.Fatalf("batches %v with cursors %q, want [7 7 6 0] and %q", batches, cursors, want)
		}
		if d1, d2 := device(t, st, "d1").Accounts, device(t, st, "d2").Accounts; d1 != 0 || d2 != 5 {
			t.Fatalf("counts d1 %d d2 %d, want 0 and 5", d1, d2)
		}
		for i := range n {
			a, err := st.AccountByName(ctx, account(i).Name)
			mustOK(t, err)
			if want := []string{"", "d2"}[i%5/4]; a.Device != want {
				t.Fatalf("%s on %q, want %q", a.Name, a.Device, want)
			}
		}
		mustOK(t, st.SetDeviceState(ctx, "d1", Retired))
	})
}

// An evacuation racing the single moves and removals of the same accounts,
// and placements of new ones on the other device, from another host: every
// account ends on no device or on d2, and each device's counter is the
// number of accounts really on it (a double decrement, or one for a row
// another transaction had already moved, would break it).
func TestUnplaceFromRace(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
		mustOK(t, st.RegisterDevice(ctx, "d2", "h2"))
		const n = 60
		for i := range n {
			mustOK(t, st.AddAccount(ctx, account(i)))
			_, err := st.Place(ctx, account(i).Name, "d1")
			mustOK(t, err)
		}
		mustOK(t, st.SetDeviceState(ctx, "d1", Draining))
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			for after := ""; ; {
				_, next, err := st.UnplaceFrom(ctx, "d1", after, 4)
				if err != nil {
					t.Error(err)
					return
				}
				if after = next; next == "" {
					return
				}
			}
		})
		wg.Go(func() {
			<-start
			for i := n - 1; i >= 0; i-- {
				switch i % 3 {
				case 0:
					mustOK(t, other.Unplace(ctx, account(i).Name))
				case 1:
					mustOK(t, other.RemoveAccount(ctx, account(i).Name))
				case 2:
					// Moved at once: off d1 and onto d2.
					mustOK(t, other.Unplace(ctx, account(i).Name))
					if _, err := other.Place(ctx, account(i).Name, "d2"); err != nil {
						t.Error(err)
					}
				}
			}
		})
		close(start)
		wg.Wait()
		var on2 uint64
		for i := range n {
			a, err := st.AccountByName(ctx, account(i).Name)
			if i%3 == 1 {
				wantErr(t, err, ErrNotFound)
				continue
			}
			mustOK(t, err)
			switch a.Device {
			case "":
			case "d2":
				on2++
			default:
				t.Fatalf("%s still on %q", a.Name, a.Device)
			}
		}
		if d1, d2 := device(t, st, "d1").Accounts, device(t, st, "d2").Accounts; d1 != 0 || d2 != on2 {
			t.Fatalf("counts d1 %d d2 %d; accounts on d2: %d", d1, d2, on2)
		}
	})
}

// PruneBuckets removes only buckets idle since before its cutoff, at most
// limit at a time; a pruned bucket comes back full, as it would have been.
func TestPruneBuckets(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		t0 := time.Unix(1_800_000_000, 0)
		const rate, burst = 1.0, 3
		for i := range 5 {
			ok, _, err := st.Take(ctx, fmt.Sprint("old", i), rate, burst, t0)
			mustOK(t, err)
			if !ok {
				t.Fatal("a new bucket refused")
			}
		}
		for range burst {
			st.Take(ctx, "busy", rate, burst, t0.Add(time.Hour))
		}
		if _, _, err := st.PruneBuckets(ctx, t0, "", 0); err == nil {
			t.Fatal("pruned 0 at a time")
		}
		// Keys in order: busy, old0 … old4; two looked at a time.
		var pruned []int
		var cursors []string
		after := ""
		for {
			n, next, err := st.PruneBuckets(ctx, t0.Add(time.Minute), after, 2)
			mustOK(t, err)
			pruned, cursors = append(pruned, n), append(cursors, next)
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(pruned, []int{1, 2, 2, 0}) || !slices.Equal(cursors, []string{"old0", "old2", "old4", ""}) {
			t.Fatalf("pruned %v with cursors %q, want [1 2 2 0] and [old0 old2 old4 \"\"]", pruned, cursors)
		}
		// "busy" was spent an hour later and is still empty: kept.
		if ok, _, err := st.Take(ctx, "busy", rate, burst, t0.Add(time.Hour)); err != nil || ok {
			t.Fatalf("the busy bucket after pruning: %v %v, want refused", ok, err)
		}
		// A pruned one is full again.
		for i := range burst {
			if ok, _, err := st.Take(ctx, "old0", rate, burst, t0.Add(time.Hour)); err != nil || !ok {
				t.Fatalf("take %d of a pruned bucket: %v %v", i, ok, err)
			}
		}
	})
}

// Takes racing prunes of their own bucket, from another host: a Take never
// fails for a bucket deleted under it (the login it limits would fail).
// A Take that made the row and then locked it in a second statement failed
// here on PostgreSQL with "no rows in result set".
func TestTakeRacesPrune(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		t0 := time.Unix(1_800_000_000, 0)
		const rounds = 200
		start := make(chan struct{})
		var wg sync.WaitGroup
		var failures atomic.Int64
		wg.Go(func() {
			<-start
			for i := range rounds {
				// Each take is an hour after the last: the bucket is
				// idle, and always refilled, so every take succeeds.
				ok, _, err := st.Take(ctx, "k", 1, 1, t0.Add(time.Duration(i)*time.Hour))
				if err != nil || !ok {
					failures.Add(1)
					t.Errorf("take %d: %v %v", i, ok, err)
				}
			}
		})
		wg.Go(func() {
			<-start
			for i := range rounds {
				if _, _, err := other.PruneBuckets(ctx, t0.Add(time.Duration(i)*time.Hour), "", 10); err != nil {
					t.Error(err)
				}
			}
		})
		close(start)
		wg.Wait()
		if failures.Load() > 0 {
			t.Fatalf("%d of %d takes failed", failures.Load(), rounds)
		}
	})
}

// A healthy report notes the device's account counter as it is then, so
// that placement can count the accounts placed since on top of the records
// the status counted; an unhealthy one changes none of the counts.
func TestReportNotesAccounts(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, _ func() Store) {
		mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
		now := time.Unix(1_800_000_000, 0)
		for i := range 3 {
			mustOK(t, st.AddAccount(ctx, account(i)))
			_, err := st.Place(ctx, account(i).Name, "d1")
			mustOK(t, err)
			if i == 1 {
				mustOK(t, st.ReportDevice(ctx, "d1", Report{Healthy: true, Seen: now, Records: 5, RecordCapacity: 100}))
			}
		}
		mustOK(t, st.ReportDevice(ctx, "d1", Report{Seen: now.Add(time.Second)}))
		d := device(t, st, "d1")
		if d.Accounts != 3 || d.AccountsReported != 2 || d.Records != 5 || d.PlacementUse() != 6 {
			t.Fatalf("%+v: use %d, want 3 accounts, 2 at the report, 5 records, use 6", d, d.PlacementUse())
		}
	})
}

// paddedAccount is account(i) under a name that sorts as i does.
func paddedAccount(i int) Account {
	a := account(i)
	a.Name = fmt.Sprintf("user%04d", i)
	return a
}

// addPaddedAccounts registers device d1 and adds paddedAccount(0..n-1),
// none placed.
func addPaddedAccounts(t *testing.T, st Store, n int) {
	t.Helper()
	mustOK(t, st.RegisterDevice(ctx, "d1", "h1"))
	for i := range n {
		mustOK(t, st.AddAccount(ctx, paddedAccount(i)))
	}
}

// placePadded places paddedAccount(0..n-1) on d1.
func placePadded(t *testing.T, st Store, n int) {
	t.Helper()
	for i := range n {
		_, err := st.Place(ctx, paddedAccount(i).Name, "d1")
		mustOK(t, err)
	}
}

// An operator who reactivates a device in the middle of an evacuation
// keeps what reactivation promises: the accounts placed on it from then on
// stay on it. The evacuation's next batch stops with ErrDeviceState and
// takes nothing off; the device's count is its accounts.
func TestUnplaceFromAfterReactivation(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		const old, fresh = 10, 5
		addPaddedAccounts(t, st, old+fresh)
		placePadded(t, st, old)
		mustOK(t, st.SetDeviceState(ctx, "d1", Draining))
		n, next, err := st.UnplaceFrom(ctx, "d1", "", 2)
		mustOK(t, err)
		if n != 2 || next != paddedAccount(1).Name {
			t.Fatalf("first batch: %d accounts, next %q", n, next)
		}
		// Another host reactivates it and places new accounts, after
		// the evacuation's cursor.
		mustOK(t, other.SetDeviceState(ctx, "d1", Active))
		for i := old; i < old+fresh; i++ {
			_, err := other.Place(ctx, paddedAccount(i).Name, "d1")
			mustOK(t, err)
		}
		_, _, err = st.UnplaceFrom(ctx, "d1", next, 100)
		wantErr(t, err, ErrDeviceState)
		for i := range old + fresh {
			a, err := st.AccountByName(ctx, paddedAccount(i).Name)
			mustOK(t, err)
			if on := a.Device == "d1"; on != (i >= 2) {
				t.Fatalf("%s on %q after the refused batch", a.Name, a.Device)
			}
		}
		if d := device(t, st, "d1"); d.Accounts != old+fresh-2 || d.State != Active {
			t.Fatalf("d1 counts %d accounts in state %s; %d are on it", d.Accounts, d.State, old+fresh-2)
		}
	})
}

// The same, the reactivation racing the evacuation's batches, as two hosts
// would: the evacuation ends, or stops with ErrDeviceState, and every
// account placed after the reactivation is still on the device, whose
// count is its accounts. (TestUnplaceFromAfterReactivation pins the order
// this leaves to chance.)
func TestUnplaceFromRacesReactivation(t *testing.T) {
	forEach(t, func(t *testing.T, st Store, peer func() Store) {
		other := peer()
		const old, fresh = 80, 40
		addPaddedAccounts(t, st, old+fresh)
		for round := range 5 {
			// Every old account on d1 again, d1 draining.
			mustOK(t, st.SetDeviceState(ctx, "d1", Active))
			for i := range old + fresh {
				mustOK(t, st.Unplace(ctx, paddedAccount(i).Name))
			}
			placePadded(t, st, old)
			mustOK(t, st.SetDeviceState(ctx, "d1", Draining))

			firstBatch := make(chan struct{})
			var evacErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				for after := ""; ; {
					_, next, err := st.UnplaceFrom(ctx, "d1", after, 2)
					if after == "" {
						close(firstBatch)
					}
					if err != nil || next == "" {
						evacErr = err
						return
					}
					after = next
				}
			})
			wg.Go(func() {
				<-firstBatch
				if err := other.SetDeviceState(ctx, "d1", Active); err != nil {
					t.Error(err)
					return
				}
				// Placed from the last name down: where the evacuation
				// has yet to go.
				for i := old + fresh - 1; i >= old; i-- {
					if _, err := other.Place(ctx, paddedAccount(i).Name, "d1"); err != nil {
						t.Error(err)
						return
					}
				}
			})
			wg.Wait()
			if t.Failed() {
				return
			}
			if evacErr != nil && !errors.Is(evacErr, ErrDeviceState) {
				t.Fatalf("round %d: evacuation: %v", round, evacErr)
			}
			var on1 uint64
			for i := range old + fresh {
				a, err := st.AccountByName(ctx, paddedAccount(i).Name)
				mustOK(t, err)
				if a.Device == "d1" {
					on1++
				} else if i >= old {
					t.Fatalf("round %d: %s, placed after d1 was reactivated, was taken off it", round, a.Name)
				}
			}
			if d := device(t, st, "d1"); d.Accounts != on1 || d.State != Active {
				t.Fatalf("round %d: d1 counts %d accounts in state %s; %d are on it", round, d.Accounts, d.State, on1)
			}
		}
	})
}
