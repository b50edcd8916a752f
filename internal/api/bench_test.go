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
	"github.com/idemhq/idem/internal/payments"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/sqlitestore"
)

// BenchmarkAcceptToSucceeded: one operation is a charge from accept to
// succeeded: POST /v1/charges with Prefer: wait, answered once a worker
// has charged the simulator (no latency) and recorded the outcome. It runs
// at concurrency 16, with 16 workers. The floor is a raw single-row INSERT
// at the same concurrency, on a pool of its own to the same database. The
// bar, on PostgreSQL: rate-vs-insert ≥ 0.25 (a charge is about three short
// transactions: accept, claim, settle).
func BenchmarkAcceptToSucceeded(b *testing.B) {
	const conc = 16
	for _, database := range []string{"sqlite", "postgres"} {
		b.Run(database, func(b *testing.B) {
			var url string
			var insert func(ctx context.Context, i int) error
			if database == "sqlite" {
				url = filepath.Join(b.TempDir(), "payd.db")
				db, err := sqlitestore.Open(b.Context(), filepath.Join(b.TempDir(), "floor.db"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { db.Close() })
				insert = floorOnSQL(b, db)
			} else {
				url = testenv.PostgresDatabase(b)
				pool, err := pgxpool.New(b.Context(), url)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(pool.Close)
				insert = floorOnPool(b, pool)
			}
			f := newFixtureOn(b, url, &payments.ProcessorConfig{Workers: conc})
			ctx := b.Context()
			floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
				func(i int) error {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/v1/charges",
						strings.NewReader(`{"amount":1999,"currency":"usd","reference":"bench"}`))
					req.Header.Set("Authorization", "Bearer "+key)
					req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(i))
					req.Header.Set("Prefer", "wait=30")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return err
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("charge %d: status %d, want 200 succeeded", i, resp.StatusCode)
					}
					return nil
				},
				floorbench.Floor{Name: "insert", Op: func(i int) error { return insert(ctx, i) }})
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

func floorOnSQL(b *testing.B, db *sql.DB) func(ctx context.Context, i int) error {
	if _, err := db.ExecContext(b.Context(), `CREATE TABLE bench_floor (id text PRIMARY KEY, amount bigint NOT NULL, created_at bigint NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, i int) error {
		_, err := db.ExecContext(ctx, `INSERT INTO bench_floor (id, amount, created_at) VALUES (?, 1999, 0)`, "f"+strconv.Itoa(i))
		return err
	}
}
