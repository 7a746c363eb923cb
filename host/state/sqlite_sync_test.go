package state

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestSQLiteLazyOnlyForBuckets: a rate-limit bucket is committed without a
// disk flush (it is spent at every login start), and the writer goes back
// to flushing every commit after it, so that no placement that follows is
// ever lost to a power cut while the database says it was made.
func TestSQLiteLazyOnlyForBuckets(t *testing.T) {
	st := openSQLiteFile(t)
	synchronous := func() int {
		var v int
		if err := st.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	const full = 2
	if v := synchronous(); v != full {
		t.Fatalf("writer opens with synchronous=%d, want FULL (%d)", v, full)
	}
	var during int
	err := st.d.writeLazy(ctx, func(q querier) error {
		return q.queryRow(ctx, "PRAGMA synchronous").Scan(&during)
	})
	if err != nil {
		t.Fatal(err)
	}
	if during == full {
		t.Errorf("a bucket's transaction runs with synchronous=FULL: a disk flush per login start")
	}
	for range 3 {
		if _, _, err := st.Take(ctx, "login/a", 1, 5, time.Now()); err != nil {
			t.Fatal(err)
		}
		if v := synchronous(); v != full {
			t.Fatalf("after Take the writer is left at synchronous=%d, want FULL (%d)", v, full)
		}
	}
}

// TestSQLiteCaches: the writer and the readers open with the page cache
// and memory map sqlite.go sets (the driver runs its _pragma list in its
// own order, which can void a setting silently, as it would a page_size
// after journal_mode).
func TestSQLiteCaches(t *testing.T) {
	st := openSQLiteFile(t)
	for _, c := range []struct {
		name string
		db   *sql.DB
		mmap int64
	}{{"writer", st.w, sqliteMmapBytes}, {"reader", st.r, sqliteReaderMmapBytes}} {
		var cache, mmap int64
		if err := c.db.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cache); err != nil {
			t.Fatal(err)
		}
		if err := c.db.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&mmap); err != nil {
			t.Fatal(err)
		}
		if cache != -sqliteCacheKiB {
			t.Errorf("%s: cache_size %d, want %d (KiB)", c.name, cache, -sqliteCacheKiB)
		}
		if mmap != c.mmap {
			t.Errorf("%s: mmap_size %d, want %d", c.name, mmap, c.mmap)
		}
	}
	// The benchmark's hook opens readers with each map it compares.
	for _, want := range benchMmaps {
		if err := st.setReaderMmap(want); err != nil {
			t.Fatal(err)
		}
		var mmap int64
		if err := st.r.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&mmap); err != nil {
			t.Fatal(err)
		}
		if mmap != want {
			t.Errorf("setReaderMmap(%d): readers map %d", want, mmap)
		}
	}
}

// openSQLiteFile migrates a new SQLite file and opens it, as *SQLite.
func openSQLiteFile(t *testing.T) *SQLite {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	if _, _, err := Migrate(ctx, "sqlite:"+path); err != nil {
		t.Fatal(err)
	}
	st, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
