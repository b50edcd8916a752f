package pgstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/floorbench"
	"github.com/idemhq/idem/pgstore"
)

// The benchmarks compare the engine with raw statements on the same pool,
// in the same run (internal/floorbench): a single-row INSERT for the first
// execution (bar: rate-vs-insert ≥ 0.40), a primary-key SELECT for the
// replay (bar: rate-vs-select ≥ 0.80), and the same business INSERT in a
// transaction of its own for RunTx (no bar: its overhead is reported).

var benchValue = []byte(`{"id":"ch_1","amount":1999}`)

func benchFn(context.Context) ([]byte, error) { return benchValue, nil }

// benchSetup returns an engine on a migrated store, the store, and a pool
// holding the floor's table, shaped like the store's: a text key and a
// bytea value.
func benchSetup(b *testing.B) (*pgxpool.Pool, *idem.Engine, *pgstore.Store, string) {
	b.Helper()
	pool := newPool(b)
	s := newStore(b, pool, pgstore.Config{ReapInterval: -1})
	table := pgx.Identifier{"idembench_floor_" + strings.ToLower(rand.Text()[:12])}.Sanitize()
	if _, err := pool.Exec(b.Context(), "CREATE TABLE "+table+" (key text PRIMARY KEY, value bytea NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Exec(context.Background(), "DROP TABLE "+table) })
	e, err := idem.New(s, nil)
	if err != nil {
		b.Fatal(err)
	}
	return pool, e, s, table
}

// storeKey is a key of the engine's store key shape, for the floor.
func storeKey(prefix string, i int) string {
	sum := sha256.Sum256([]byte(prefix + strconv.Itoa(i)))
	return "bench/" + hex.EncodeToString(sum[:])
}

func eachConc(b *testing.B, bench func(b *testing.B, conc int)) {
	for _, conc := range []int{1, 16} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) { bench(b, conc) })
	}
}

func BenchmarkFirstExecution(b *testing.B) {
	eachConc(b, func(b *testing.B, conc int) {
		pool, e, s, table := benchSetup(b)
		sql := s.Statements()
		ctx := b.Context()
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
			func(i int) error {
				res, err := e.Run(ctx, "first-"+strconv.Itoa(i), benchFn, nil)
				if err == nil && res.Replayed {
					return fmt.Errorf("key %d replayed on its first call", i)
				}
				return err
			},
			floorbench.Floor{Name: "insert", Op: func(i int) error {
				_, err := pool.Exec(ctx, "INSERT INTO "+table+" (key, value) VALUES ($1, $2)", storeKey("floor", i), benchValue)
				return err
			}},
			// For diagnosis: two commits, as a first execution needs, in
			// the plainest statements. rate-vs-insert divided by
			// rate-vs-twostep is how close two commits come to the bar.
			floorbench.Floor{Name: "twostep", Op: func(i int) error {
				key := storeKey("twostep", i)
				if _, err := pool.Exec(ctx, "INSERT INTO "+table+" (key, value) VALUES ($1, $2)", key, benchValue); err != nil {
					return err
				}
				_, err := pool.Exec(ctx, "UPDATE "+table+" SET value = $2 WHERE key = $1", key, benchValue)
				return err
			}},
			// For diagnosis: the store's own claim and completion
			// statements, sent raw through the pool, as a lone call sends
			// them, with the engine's defaults. rate-vs-statements is what
			// the store's and the engine's Go code leave of them.
			floorbench.Floor{Name: "statements", Op: func(i int) error {
				key, owner := storeKey("statements", i), "owner-"+strconv.Itoa(i)
				var r struct {
					status          int
					fence, leftMs   int64
					tookOver, waits bool
					outcome         []byte
				}
				err := pool.QueryRow(ctx, sql["claimTimed"], key, owner, "", (30*time.Second).Milliseconds(), (24*time.Hour).Milliseconds()).
					Scan(&r.status, &r.fence, &r.tookOver, &r.outcome, &r.leftMs)
				if err != nil {
					return err
				}
				return pool.QueryRow(ctx, sql["completeTimed"], key, owner, r.fence, benchValue).Scan(&r.waits)
			}})
	})
}

func BenchmarkReplay(b *testing.B) {
	eachConc(b, func(b *testing.B, conc int) {
		pool, e, _, table := benchSetup(b)
		ctx := b.Context()
		const keys = 1024
		for i := range keys {
			if _, err := e.Run(ctx, "replay-"+strconv.Itoa(i), benchFn, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := pool.Exec(ctx, "INSERT INTO "+table+" (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", storeKey("replay", i), benchValue); err != nil {
				b.Fatal(err)
			}
		}
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
			func(i int) error {
				res, err := e.Run(ctx, "replay-"+strconv.Itoa(i%keys), benchFn, nil)
				if err == nil && !res.Replayed {
					return fmt.Errorf("key %d ran again", i%keys)
				}
				return err
			},
			floorbench.Floor{Name: "select", Op: func(i int) error {
				var v []byte
				return pool.QueryRow(ctx, "SELECT value FROM "+table+" WHERE key = $1", storeKey("replay", i%keys)).Scan(&v)
			}})
	})
}

// BenchmarkRunTx: fn inserts one business row in the transaction that holds
// its claim and records its outcome. Floor: the same INSERT in a
// transaction of its own, without idem.
func BenchmarkRunTx(b *testing.B) {
	eachConc(b, func(b *testing.B, conc int) {
		pool, e, _, table := benchSetup(b)
		ctx := b.Context()
		insert := func(ctx context.Context, tx pgx.Tx, key string) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" (key, value) VALUES ($1, $2)", key, benchValue)
			return err
		}
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true},
			func(i int) error {
				key := "tx-" + strconv.Itoa(i)
				_, err := idem.RunTx(ctx, e, key, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
					return benchValue, insert(ctx, tx, key)
				}, nil)
				return err
			},
			floorbench.Floor{Name: "tx", Op: func(i int) error {
				return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return insert(ctx, tx, "bare-"+strconv.Itoa(i)) })
			}})
	})
}
