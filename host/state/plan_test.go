package state

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cofferhsm/coffer/host/state/pgtest"
)

// TestRoutePlan checks that route lookup reads one index and not the
// table: SQLite searches the covering index accounts_token_cover,
// PostgreSQL scans it index-only (which skips the table for pages the
// visibility map marks all-visible, as VACUUM and autovacuum do).
func TestRoutePlan(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st, _ := openDSN(t, sqliteDSN(t))
		for i := range 50 {
			mustOK(t, st.AddAccount(ctx, account(i)))
		}
		_, err := st.(*SQLite).w.Exec("ANALYZE")
		mustOK(t, err)
		r := st.(*SQLite).r
		sum := account(7).TokenSHA256
		rs, err := r.Query("EXPLAIN QUERY PLAN "+sqliteQuery(accountByTokenQuery), sum[:])
		mustOK(t, err)
		defer rs.Close()
		var plan []string
		for rs.Next() {
			var id, parent, unused int
			var detail string
			mustOK(t, rs.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		mustOK(t, rs.Err())
		if len(plan) != 1 || !strings.Contains(plan[0], "USING COVERING INDEX accounts_token_cover") {
			t.Fatalf("route lookup plan %q, want one search of the covering index accounts_token_cover", plan)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		st, _ := openDSN(t, pgtest.DSN(t))
		for i := range 50 {
			mustOK(t, st.AddAccount(ctx, account(i)))
		}
		pool := st.(*Postgres).pool
		_, err := pool.Exec(ctx, "VACUUM ANALYZE accounts")
		mustOK(t, err)
		sum := account(7).TokenSHA256
		// A table this small is cheapest read whole; the plan at
		// size is the question.
		tx, err := pool.Begin(ctx)
		mustOK(t, err)
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off")
		mustOK(t, err)
		// EXPLAIN ANALYZE runs it: the plan and how many rows it
		// fetched from the table.
		rs, err := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+accountByTokenQuery, pgx.QueryExecModeExec, sum[:])
		mustOK(t, err)
		lines, err := pgx.CollectRows(rs, pgx.RowTo[string])
		mustOK(t, err)
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "Index Only Scan using accounts_token_cover on accounts") {
			t.Fatalf("route lookup plan:\n%s\nwant an index-only scan of accounts_token_cover", plan)
		}
	})
}
