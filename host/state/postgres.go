package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is a Store in a PostgreSQL database (jackc/pgx), which the
// several cofferd hosts of one realm share. Transactions run at READ
// COMMITTED; the writes that decide (placement, counts, device states,
// buckets) lock the rows they read, so concurrent hosts queue on them.
type Postgres struct {
	sqlStore
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the PostgreSQL database of dsn (a postgres://
// URL or a libpq key=value string) and checks that its schema is this
// binary's (ErrSchema if not: run Migrate).
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	s, err := openPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, s.d.read(), postgresSchema); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("state: cannot parse the PostgreSQL DSN")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("state: PostgreSQL: %w", err)
	}
	s := &Postgres{pool: pool}
	s.d = pgDialect{s}
	return s, nil
}

// Close closes the connection pool.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

type pgDialect struct{ s *Postgres }

// pgRetries is how often a transaction that PostgreSQL aborted as a
// deadlock or serialization failure is run again.
const pgRetries = 5

func (d pgDialect) write(ctx context.Context, fn func(q querier) error) error {
	var err error
	for range pgRetries {
		err = pgx.BeginFunc(ctx, d.s.pool, func(tx pgx.Tx) error { return fn(pgQuerier{tx}) })
		if c := pgCode(err); c != "40001" && c != "40P01" {
			return err
		}
	}
	return err
}

// writeLazy runs fn with synchronous_commit off for this transaction
// only: PostgreSQL may then answer before the commit is flushed, and a
// server crash can lose the latest such commits, never others.
func (d pgDialect) writeLazy(ctx context.Context, fn func(q querier) error) error {
	return d.write(ctx, func(q querier) error {
		if _, err := q.exec(ctx, "SET LOCAL synchronous_commit TO OFF"); err != nil {
			return err
		}
		return fn(q)
	})
}

func (d pgDialect) read() querier { return pgQuerier{d.s.pool} }

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func (pgDialect) unique(err error) bool     { return pgCode(err) == "23505" }
func (pgDialect) foreignKey(err error) bool { return pgCode(err) == "23503" }

type pgQuerier struct {
	db interface {
		Exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error)
		QueryRow(ctx context.Context, q string, args ...any) pgx.Row
		Query(ctx context.Context, q string, args ...any) (pgx.Rows, error)
	}
}

func (q pgQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.db.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (q pgQuerier) queryRow(ctx context.Context, query string, args ...any) scanner {
	return q.db.QueryRow(ctx, query, args...)
}

func (q pgQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	return q.db.Query(ctx, query, args...)
}
