package api

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem/internal/floorbench"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/sqlitestore"
)

// BenchmarkAcceptToSucceeded: one operation is a charge from accept to
// succeeded: POST /v1/charges with Prefer: wait, answered once a worker
// has charged the simulator (no latency) and recorded the outcome. It runs
// at concurrency 16, with 16 workers. The floors run at the same
// concurrency, on a pool of their own to the same database: a raw
// single-row INSERT, and on PostgreSQL also pgbench's simple-update
// transaction. The bar, on PostgreSQL: rate-vs-simple-update ≥ 0.25 (a
// charge is about three short transactions: accept, claim, settle).
func BenchmarkAcceptToSucceeded(b *testing.B) {
	const conc = 16
	for _, database := range []string{"sqlite", "postgres"} {
		b.Run(database, func(b *testing.B) {
			var url string
			var insert, simpleUpdate func(ctx context.Context, i int) error
			if database == "sqlite" {
				url = filepath.Join(b.TempDir(), "payd.db")
				db, err := sqlitestore.OpenDB(b.Context(), filepath.Join(b.TempDir(), "floor.db"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { db.Close() })
				insert = floorOnSQL(b, db)
			} else {
				url = pgtest.Database(b)
				pool, err := pgxpool.New(b.Context(), url)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(pool.Close)
				insert = floorOnPool(b, pool)
				simpleUpdate = simpleUpdateOnPool(b, pool)
			}
			f := newFixtureOn(b, url, &payments.ProcessorConfig{Workers: conc})
			ctx := b.Context()
			// Clients keep their connections, as real ones do: the default
			// client keeps two idle per host, and at this concurrency would
			// dial (and payd accept) a connection for most charges.
			transport := http.DefaultTransport.(*http.Transport).Clone()
			transport.MaxIdleConnsPerHost = conc
			client := &http.Client{Transport: transport}
			b.Cleanup(transport.CloseIdleConnections)
			floors := []floorbench.Floor{{Name: "insert", Op: func(i int) error { return insert(ctx, i) }}}
			if simpleUpdate != nil {
				floors = append(floors, floorbench.Floor{Name: "simple-update", Op: func(i int) error { return simpleUpdate(ctx, i) }})
			}
			floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
				func(i int) error {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/v1/charges",
						strings.NewReader(`{"amount":1999,"currency":"usd","reference":"bench"}`))
					req.Header.Set("Authorization", "Bearer "+key)
					req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(i))
					req.Header.Set("Prefer", "wait=30")
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("charge %d: status %d, want 200 succeeded", i, resp.StatusCode)
					}
					return nil
				},
				floors...)
		})
	}
}

func floorOnPool(b *testing.B, pool *pgxpool.Pool) func(ctx context.Context, i int) error {
	if _, err := pool.Exec(b.Context(), `CREATE TABLE bench_floor (id text PRIMARY KEY, amount bigint NOT NULL, created_at bigint NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, i int) error {
		_, err := pool.Exec(ctx, `INSERT INTO bench_floor (id, amount, created_at) VALUES ($1, 1999, 0)`, "f"+strconv.Itoa(i))
		return err
	}
}

// simpleUpdateOnPool is pgbench's built-in simple-update transaction
// (pgbench -N) at scale 1: in one transaction, update a random account's
// balance, read it back and append to the history. Five round trips and one
// commit, like pgbench's.
func simpleUpdateOnPool(b *testing.B, pool *pgxpool.Pool) func(ctx context.Context, i int) error {
	const accounts = 100_000
	for _, ddl := range []string{
		`CREATE TABLE bench_accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))`,
		`INSERT INTO bench_accounts (aid, bid, abalance) SELECT a, 1, 0 FROM generate_series(1, 100000) a`,
		`CREATE TABLE bench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))`,
		`VACUUM ANALYZE bench_accounts`,
	} {
		if _, err := pool.Exec(b.Context(), ddl); err != nil {
			b.Fatal(err)
		}
	}
	return func(ctx context.Context, i int) error {
		aid, tid, delta := 1+(i*7919)%accounts, 1+i%10, i%10001-5000
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `UPDATE bench_accounts SET abalance = abalance + $1 WHERE aid = $2`, delta, aid); err != nil {
			return err
		}
		var balance int
		if err := tx.QueryRow(ctx, `SELECT abalance FROM bench_accounts WHERE aid = $1`, aid).Scan(&balance); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO bench_history (tid, bid, aid, delta, mtime) VALUES ($1, 1, $2, $3, CURRENT_TIMESTAMP)`, tid, aid, delta); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
}

func floorOnSQL(b *testing.B, db *sql.DB) func(ctx context.Context, i int) error {
	if _, err := db.ExecContext(b.Context(), `CREATE TABLE bench_floor (id text PRIMARY KEY, amount bigint NOT NULL, created_at bigint NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, i int) error {
		_, err := db.ExecContext(ctx, `INSERT INTO bench_floor (id, amount, created_at) VALUES (?, 1999, 0)`, "f"+strconv.Itoa(i))
		return err
	}
}
