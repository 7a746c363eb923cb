package state

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhsm/coffer/host/state/pgtest"
)

// dsns are the databases: a fresh SQLite file and a fresh PostgreSQL
// database, with a way to run one statement on them behind the store's back.
var dsns = map[string]struct {
	dsn  func(t *testing.T) string
	exec func(t *testing.T, dsn, q string)
}{
	"sqlite": {sqliteDSN, func(t *testing.T, dsn, q string) {
		db, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:"))
		mustOK(t, err)
		defer db.Close()
		_, err = db.Exec(q)
		mustOK(t, err)
	}},
	"postgres": {func(t *testing.T) string { return pgtest.DSN(t) }, func(t *testing.T, dsn, q string) {
		c, err := pgx.Connect(context.Background(), dsn)
		mustOK(t, err)
		defer c.Close(context.Background())
		_, err = c.Exec(context.Background(), q)
		mustOK(t, err)
	}},
}

func forEachDB(t *testing.T, test func(t *testing.T, dsn string, exec func(q string))) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			d := dsns[name]
			dsn := d.dsn(t)
			test(t, dsn, func(q string) { d.exec(t, dsn, q) })
		})
	}
}

func TestMigrate(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string, exec func(string)) {
		// A database never migrated is refused.
		_, err := Open(ctx, dsn)
		wantErr(t, err, ErrSchema)
		from, to, err := Migrate(ctx, dsn)
		mustOK(t, err)
		if from != 0 || to != SchemaVersion() {
			t.Fatalf("migrated %d → %d, want 0 → %d", from, to, SchemaVersion())
		}
		// Again: a no-op.
		from, to, err = Migrate(ctx, dsn)
		mustOK(t, err)
		if from != SchemaVersion() || to != SchemaVersion() {
			t.Fatalf("second migration %d → %d", from, to)
		}
		st, err := Open(ctx, dsn)
		mustOK(t, err)
		mustOK(t, st.AddAccount(ctx, account(1)))
		st.Close()
		if p, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
			for _, f := range []string{p, p + "-wal"} {
				if fi, err := os.Stat(f); err == nil && fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
				}
			}
		}

		// A newer cofferd migrated it: this one refuses to open it or
		// to migrate it.
		exec("INSERT INTO schema_migrations (version, applied) VALUES (999, 0)")
		_, err = Open(ctx, dsn)
		wantErr(t, err, ErrSchema)
		if !strings.Contains(err.Error(), "newer") {
			t.Fatalf("newer schema: %v", err)
		}
		_, _, err = Migrate(ctx, dsn)
		wantErr(t, err, ErrSchema)
	})
}

// Hosts migrating at once: the migration runs once, and each ends at the
// binary's version.
func TestMigrateConcurrent(t *testing.T) {
	forEachDB(t, func(t *testing.T, dsn string, exec func(string)) {
		const n = 6
		var wg sync.WaitGroup
		var froms, tos [n]int
		var errs [n]error
		for i := range n {
			wg.Go(func() { froms[i], tos[i], errs[i] = Migrate(ctx, dsn) })
		}
		wg.Wait()
		ran := 0
		for i := range n {
			mustOK(t, errs[i])
			if tos[i] != SchemaVersion() {
				t.Fatalf("migrator %d ended at %d", i, tos[i])
			}
			if froms[i] == 0 {
				ran++
			}
		}
		if ran != 1 {
			t.Fatalf("%d migrators ran the migrations", ran)
		}
		st, err := Open(ctx, dsn)
		mustOK(t, err)
		st.Close()
	})
}

func TestParseDSN(t *testing.T) {
	for dsn, want := range map[string]string{
		"memory:":                            "memory ",
		"sqlite:/var/lib/coffer/state":       "sqlite /var/lib/coffer/state",
		"state/coffer.db":                    "sqlite state/coffer.db",
		"postgres://u@h/db":                  "postgres postgres://u@h/db",
		"postgresql://u@h/db":                "postgres postgresql://u@h/db",
		"host=/run/postgresql dbname=coffer": "postgres host=/run/postgresql dbname=coffer",
	} {
		kind, arg, err := ParseDSN(dsn)
		if err != nil || kind+" "+arg != want {
			t.Errorf("%q: %q %q %v, want %q", dsn, kind, arg, err, want)
		}
	}
	for _, dsn := range []string{"", "sqlite:", "state.json", "mysql://x", "http://x/a.db"} {
		if _, _, err := ParseDSN(dsn); err == nil {
			t.Errorf("%q accepted", dsn)
		}
	}
	// A DSN that is refused is not repeated (it may hold a password).
	if _, _, err := ParseDSN("postgre://u:hunter2@h/db"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad postgres DSN: %v", err)
	}
	_, err := Open(ctx, "postgres://u:hunter2@[::1/db")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("unparsable postgres DSN: %v", err)
	}
	if st, err := Open(ctx, "memory:"); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*Memory); !ok {
		t.Fatalf("memory: opened a %T", st)
	}
	if _, _, err := Migrate(ctx, "memory:"); err != nil {
		t.Fatal(err)
	}
}

// A postgres:// URL opens the same database as the key=value string.
func TestPostgresURL(t *testing.T) {
	kv := pgtest.DSN(t)
	q := url.Values{}
	for _, f := range strings.Fields(kv) {
		k, v, _ := strings.Cut(f, "=")
		q.Set(k, v)
	}
	db := q.Get("dbname")
	q.Del("dbname")
	u := "postgres:///" + db + "?" + q.Encode()
	from, to, err := Migrate(ctx, u)
	mustOK(t, err)
	if from != 0 || to != SchemaVersion() {
		t.Fatalf("migrated %d → %d", from, to)
	}
	st, err := Open(ctx, kv)
	mustOK(t, err)
	defer st.Close()
	if _, ok := st.(*Postgres); !ok {
		t.Fatalf("opened a %T", st)
	}
}
