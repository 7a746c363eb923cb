package state

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is a Store in one SQLite file (modernc.org/sqlite, pure Go), the
// embedded default for a realm served by one host. The file is in WAL mode
// with foreign keys on; this process writes through one connection (so its
// own writers queue instead of failing with SQLITE_BUSY) and reads through
// a pool; another process writing the same file (`cofferd account add`
// beside the daemon) waits up to the busy timeout.
type SQLite struct {
	sqlStore
	path string
	w, r *sql.DB
	// Statements prepared once on the read pool.
	rstmts sync.Map
}

var _ Store = (*SQLite)(nil)

// sqliteBusyMillis is how long a writer waits for another process's.
const sqliteBusyMillis = 10000

const (
	// sqliteMmapBytes is how much of the file the writer maps: the
	// most this build of SQLite maps (SQLITE_MAX_MMAP_SIZE, 2 GiB less
	// 64 KiB; a larger mmap_size is cut down to it). At 10 million
	// accounts the file is about 2.6 GB, and what lies past the map is
	// read with a read call into the page cache (host/state/README.md).
	// The writer's own commits leave its map and cache in place (only
	// another process's commit drops them).
	sqliteMmapBytes = 0x7fff0000
	// sqliteReaderMmapBytes is how much of the file each reader maps:
	// none. SQLite drops a reader's map (and empties its cache) at its
	// first read after another connection's commit, and in cofferd a
	// login start commits a rate-limit bucket before the lookups of its
	// requests: the 2 GiB map made such a lookup 2–7 times slower
	// (185–601 µs against 34–159 µs at 10 thousand and 10 million
	// accounts), and saved 2–7 µs of 21–29 at 10 million with no write
	// between lookups (BenchmarkState, host/state/README.md).
	sqliteReaderMmapBytes = 0
	// sqliteCacheKiB is each connection's page cache, in KiB. SQLite
	// empties a reader's cache (and drops its map) at the first read
	// after another connection's commit, in a time that grows with the
	// most pages the cache has held: a larger cache made lookups that
	// follow writes slower (README.md, "Tests and benchmarks").
	sqliteCacheKiB = 32 << 10
)

// sqliteRewrite holds each statement rewritten from PostgreSQL's dialect:
// numbered parameters as ?N, and no row locks (there is one writer).
var sqliteRewrite sync.Map

func sqliteQuery(q string) string {
	if v, ok := sqliteRewrite.Load(q); ok {
		return v.(string)
	}
	r := q
	if q == accountByTokenQuery {
		// SQLite's planner prefers the unique index accounts_token,
		// which needs a second descent into the table for the other
		// columns; the covering index answers in one.
		r = strings.Replace(r, " FROM accounts ", " FROM accounts INDEXED BY accounts_token_cover ", 1)
	}
	r = strings.ReplaceAll(strings.ReplaceAll(r, " FOR UPDATE", ""), "$", "?")
	sqliteRewrite.Store(q, r)
	return r
}

// OpenSQLite opens (creating it if need be) the SQLite database at path and
// checks that its schema is this binary's (ErrSchema if not: run Migrate).
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	s, err := openSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, s.d.read(), sqliteSchema); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("state: SQLite path %q: want a file name without ? or #", path)
	}
	// A new file is the daemon's alone (SQLite gives its -wal and -shm
	// files the same mode).
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	}
	wq := url.Values{"_txlock": {"immediate"}}
	// FULL: a commit is on disk when it returns (placements above all:
	// one lost would let an account be placed, and registered, twice);
	// writeLazy relaxes it for rate-limit buckets only.
	// busy_timeout first: switching to WAL takes a lock that another
	// process opening the same file at once may hold, and only a timeout
	// already set makes the switch wait for it rather than fail busy.
	wq["_pragma"] = append(sqlitePragmas(sqliteMmapBytes), "journal_mode(WAL)", "synchronous(FULL)")
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	// The writer opens (and creates) the file and switches it to WAL
	// before any reader opens it.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	s := &SQLite{path: path, w: w, r: sqliteReaders(path, sqliteReaderMmapBytes)}
	s.d = sqliteDialect{s}
	return s, nil
}

// sqlitePragmas are the settings every connection opens with, mapping
// mmap bytes of the file.
func sqlitePragmas(mmap int64) []string {
	return []string{
		fmt.Sprintf("busy_timeout(%d)", sqliteBusyMillis),
		"foreign_keys(1)",
		// Pages in a connection's map (the writer's; the readers map
		// nothing) are read from the OS page cache without a read call
		// a page and are not copied into its page cache; pages past
		// the map, those read from the WAL and those the writer
		// changes are, 32 MiB of them a connection (the default is 2
		// MiB). An I/O error under the map kills the process (SIGBUS),
		// which fails closed.
		fmt.Sprintf("cache_size(-%d)", sqliteCacheKiB),
		fmt.Sprintf("mmap_size(%d)", mmap),
	}
}

// sqliteReaders is a read pool on path whose connections map mmap bytes
// of the file (the benchmark compares map sizes on one file).
func sqliteReaders(path string, mmap int64) *sql.DB {
	q := url.Values{"_pragma": append(sqlitePragmas(mmap), "query_only(1)")}
	// sql.Open of a registered driver only records the name: it cannot fail.
	r, _ := sql.Open("sqlite", path+"?"+q.Encode())
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	return r
}

// Close closes the database.
func (s *SQLite) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

type sqliteDialect struct{ s *SQLite }

func (d sqliteDialect) write(ctx context.Context, fn func(q querier) error) error {
	tx, err := d.s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	return inTx(tx, err, fn)
}

// inTx runs fn in the transaction tx has begun (err: it could not) and
// commits it, or rolls it back when fn fails.
func inTx(tx *sql.Tx, err error, fn func(q querier) error) error {
	if err != nil {
		return err
	}
	if err := fn(sqlQuerier{tx: tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// writeLazy commits with synchronous=NORMAL on the writer's connection
// (a per-connection setting) and puts FULL back after: in WAL mode such a
// commit reaches the log but is flushed only with the next FULL commit or
// checkpoint, so a power cut can lose it and nothing else.
func (d sqliteDialect) writeLazy(ctx context.Context, fn func(q querier) error) error {
	conn, err := d.s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		return err
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = FULL"); err != nil {
			// A writer that cannot be put back to FULL is dropped,
			// not reused for a placement.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	tx, err := conn.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	return inTx(tx, err, fn)
}

func (d sqliteDialect) read() querier { return sqlQuerier{db: d.s.r, stmts: &d.s.rstmts} }

func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func (sqliteDialect) unique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

func (sqliteDialect) foreignKey(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// sqlQuerier runs rewritten statements in a transaction, or on a pool
// where each statement is prepared once.
type sqlQuerier struct {
	db    *sql.DB
	stmts *sync.Map
	tx    *sql.Tx
}

func (q sqlQuerier) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := q.stmts.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	p, err := q.db.PrepareContext(ctx, sqliteQuery(query))
	if err != nil {
		return nil, err
	}
	if v, loaded := q.stmts.LoadOrStore(query, p); loaded {
		p.Close()
		return v.(*sql.Stmt), nil
	}
	return p, nil
}

func (q sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	// Writes run in a transaction on the one writer connection (which
	// it holds, so nothing is prepared beside it).
	res, err := q.tx.ExecContext(ctx, sqliteQuery(query), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (q sqlQuerier) queryRow(ctx context.Context, query string, args ...any) scanner {
	if q.tx != nil {
		return q.tx.QueryRowContext(ctx, sqliteQuery(query), args...)
	}
	st, err := q.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

func (q sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	var rs *sql.Rows
	var err error
	if q.tx != nil {
		rs, err = q.tx.QueryContext(ctx, sqliteQuery(query), args...)
	} else {
		var st *sql.Stmt
		if st, err = q.stmt(ctx, query); err == nil {
			rs, err = st.QueryContext(ctx, args...)
		}
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
