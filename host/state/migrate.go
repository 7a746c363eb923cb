package state

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrSchema is returned by Open for a database whose schema is not the one
// this binary was built for: older (run `cofferd migrate`) or newer (run a
// newer cofferd).
var ErrSchema = errors.New("state: the database's schema version is not this cofferd's")

//go:embed migrations
var migrationFS embed.FS

// A schema is one dialect's migrations, in order: migrations[i] takes the
// schema from version i to i+1.
type schema struct {
	name       string
	migrations []string
	// hasTable says whether schema_migrations exists (one count).
	hasTable string
	// lock, when set, runs first in a migration's transaction: it
	// serialises migrators on other hosts.
	lock string
}

var (
	sqliteSchema = mustSchema("sqlite", schema{
		hasTable: `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`,
	})
	postgresSchema = mustSchema("postgres", schema{
		hasTable: `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'`,
		// A constant key: "coffer" in ASCII.
		lock: `SELECT pg_advisory_xact_lock(111546266853746)`,
	})
)

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// mustSchema reads migrations/<name>/NNNN_*.sql, which must be numbered
// 0001 upwards without a gap.
func mustSchema(name string, s schema) schema {
	s.name = name
	dir := path.Join("migrations", name)
	ents, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		panic(err)
	}
	for i, e := range ents {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			panic("state: migration file name " + e.Name())
		}
		if n, _ := strconv.Atoi(m[1]); n != i+1 {
			panic(fmt.Sprintf("state: migration %s: want number %04d", e.Name(), i+1))
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			panic(err)
		}
		s.migrations = append(s.migrations, string(b))
	}
	return s
}

// SchemaVersion is the schema version this binary reads and writes.
func SchemaVersion() int { return len(sqliteSchema.migrations) }

func init() {
	if len(sqliteSchema.migrations) != len(postgresSchema.migrations) {
		panic("state: the SQLite and PostgreSQL migrations differ in number")
	}
}

// version reads the schema version of a database: 0 if it has none yet.
func version(ctx context.Context, q querier, s schema) (int, error) {
	var n int
	if err := q.queryRow(ctx, s.hasTable).Scan(&n); err != nil {
		return 0, fmt.Errorf("state: read the schema version: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v *int64
	if err := q.queryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("state: read the schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return int(*v), nil
}

func checkSchema(ctx context.Context, q querier, s schema) error {
	v, err := version(ctx, q, s)
	if err != nil {
		return err
	}
	return schemaError(v, len(s.migrations))
}

func schemaError(have, want int) error {
	switch {
	case have < want:
		return fmt.Errorf("%w: the database is at version %d, this cofferd needs %d: run cofferd migrate", ErrSchema, have, want)
	case have > want:
		return fmt.Errorf("%w: the database is at version %d, newer than this cofferd's %d: run a newer cofferd", ErrSchema, have, want)
	}
	return nil
}

// migrate brings the database to the binary's version in one transaction.
// A database newer than the binary is left alone (ErrSchema).
func migrate(ctx context.Context, d dialect, s schema) (from, to int, err error) {
	err = d.write(ctx, func(q querier) error {
		if s.lock != "" {
			if _, err := q.exec(ctx, s.lock); err != nil {
				return err
			}
		}
		if _, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`); err != nil {
			return err
		}
		v, err := version(ctx, q, s)
		if err != nil {
			return err
		}
		from, to = v, v
		if v > len(s.migrations) {
			return schemaError(v, len(s.migrations))
		}
		for i := v; i < len(s.migrations); i++ {
			if _, err := q.exec(ctx, s.migrations[i]); err != nil {
				return fmt.Errorf("state: %s migration %d: %w", s.name, i+1, err)
			}
			if _, err := q.exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`, i+1, time.Now().UnixNano()); err != nil {
				return err
			}
			to = i + 1
		}
		return nil
	})
	if err != nil {
		return from, from, err
	}
	return from, to, nil
}

// Migrate brings the database of dsn to this binary's schema version, running
// the pending migrations in one transaction (on PostgreSQL under an advisory
// lock, so that hosts migrating at once run them once), and returns the
// versions before and after. It refuses a database newer than the binary.
// A memory: store is always current.
func Migrate(ctx context.Context, dsn string) (from, to int, err error) {
	kind, arg, err := ParseDSN(dsn)
	if err != nil {
		return 0, 0, err
	}
	switch kind {
	case "sqlite":
		s, err := openSQLite(ctx, arg)
		if err != nil {
			return 0, 0, err
		}
		defer s.Close()
		return migrate(ctx, s.d, sqliteSchema)
	case "postgres":
		s, err := openPostgres(ctx, arg)
		if err != nil {
			return 0, 0, err
		}
		defer s.Close()
		return migrate(ctx, s.d, postgresSchema)
	}
	return SchemaVersion(), SchemaVersion(), nil
}

// Open opens the store of dsn, refusing (ErrSchema) a database whose schema
// version is not this binary's.
func Open(ctx context.Context, dsn string) (Store, error) {
	kind, arg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "sqlite":
		return OpenSQLite(ctx, arg)
	case "postgres":
		return OpenPostgres(ctx, arg)
	}
	return NewMemory(), nil
}

var libpqKey = regexp.MustCompile(`^\s*[a-z_]+\s*=`)

// ParseDSN says which store a DSN names — "sqlite", "postgres" or "memory" —
// and what to open it with:
//
//	sqlite:PATH, or a PATH ending in .db       SQLite file PATH
//	postgres://… or postgresql://…            PostgreSQL (a URL)
//	host=… dbname=… (libpq key=value)          PostgreSQL
//	memory:                                    this process's memory
func ParseDSN(dsn string) (kind, arg string, err error) {
	switch {
	case dsn == "memory:":
		return "memory", "", nil
	case strings.HasPrefix(dsn, "sqlite:"):
		if p := strings.TrimPrefix(dsn, "sqlite:"); p != "" {
			return "sqlite", p, nil
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"), libpqKey.MatchString(dsn):
		return "postgres", dsn, nil
	case strings.HasSuffix(dsn, ".db") && !strings.Contains(dsn, "://"):
		return "sqlite", dsn, nil
	}
	// Not repeated: it may hold a password.
	return "", "", errors.New("state: unknown store DSN (want sqlite:PATH, PATH.db, postgres://…, host=… dbname=…, or memory:)")
}
