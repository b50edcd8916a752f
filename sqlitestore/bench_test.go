package sqlitestore_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/floorbench"
)

// The benchmarks measure their floors in the same run, on the same *sql.DB,
// interleaved with the engine (internal/floorbench), and report the engine's
// throughput as a fraction of each floor's (rate-vs-<floor>: 1 means as
// fast as the floor). Absolute times
// depend on the disk's fsync; the ratios are the figures to track.
//
//   - first execution (a new key: read, claim, complete) against a raw
//     single-row INSERT;
//   - replay (a completed key: one read) against a raw primary-key SELECT;
//   - RunTx (claim, the caller's INSERT and the outcome in one transaction)
//     against the same INSERT in a transaction of its own.
//
// Each runs at concurrency 1 and 16, on a database opened by Open
// (synchronous=FULL) and with synchronous=NORMAL.

const benchValue = `{"id":"ch_1","amount":1999}`

// floorSchema mirrors idem_records' key and outcome: a TEXT primary key of
// a store key's shape in a WITHOUT ROWID table, and a BLOB.
const floorSchema = `CREATE TABLE bench_floor (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT, WITHOUT ROWID`

// benchDB opens a new database file with the given synchronous setting;
// FULL is Open's own.
func benchDB(b *testing.B, synchronous string) *sql.DB {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.db")
	if synchronous == "FULL" {
		return openDB(b, filepath.Dir(path), filepath.Base(path))
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(" + synchronous + ")"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	b.Cleanup(func() { db.Close() })
	return db
}

// storeKey returns a key of the engine's store key shape.
func storeKey(prefix string, i int) string {
	sum := sha256.Sum256([]byte(prefix + strconv.Itoa(i)))
	return "bench/" + hex.EncodeToString(sum[:])
}

// benchSetup returns an engine on a Store on a new database with the floor
// table and the business table, and the floor's prepared statements.
func benchSetup(b *testing.B, synchronous string) (db *sql.DB, e *idem.Engine, insert, selectPK *sql.Stmt) {
	b.Helper()
	db = benchDB(b, synchronous)
	s := newStore(b, db, nil)
	for _, ddl := range []string{floorSchema, business} {
		if _, err := db.ExecContext(b.Context(), ddl); err != nil {
			b.Fatal(err)
		}
	}
	var err error
	e, err = idem.New(s, nil)
	if err != nil {
		b.Fatal(err)
	}
	if insert, err = db.PrepareContext(b.Context(), "INSERT INTO bench_floor (key, value) VALUES (?, ?)"); err != nil {
		b.Fatal(err)
	}
	if selectPK, err = db.PrepareContext(b.Context(), "SELECT value FROM bench_floor WHERE key = ?"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { insert.Close(); selectPK.Close() })
	return db, e, insert, selectPK
}

func eachSetting(b *testing.B, bench func(b *testing.B, synchronous string, conc int)) {
	for _, synchronous := range []string{"FULL", "NORMAL"} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("sync=%s/c%d", synchronous, conc), func(b *testing.B) { bench(b, synchronous, conc) })
		}
	}
}

// BenchmarkFirstExecution: every call runs fn on a new key. Floor: a raw
// INSERT of one row on a new key.
func BenchmarkFirstExecution(b *testing.B) {
	eachSetting(b, func(b *testing.B, synchronous string, conc int) {
		_, e, insert, _ := benchSetup(b, synchronous)
		ctx := b.Context()
		value := []byte(benchValue)
		fn := func(context.Context) ([]byte, error) { return value, nil }
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true}, func(i int) error {
			res, err := e.Run(ctx, "order-"+strconv.Itoa(i), fn, nil)
			if err == nil && res.Replayed {
				return fmt.Errorf("key %d replayed on its first call", i)
			}
			return err
		}, floorbench.Floor{Name: "insert", Op: func(i int) error {
			_, err := insert.ExecContext(ctx, storeKey("floor", i), value)
			return err
		}})
	})
}

// BenchmarkReplay: every call replays one of 1,024 completed keys. Floor: a
// raw primary-key SELECT of one of 1,024 rows.
func BenchmarkReplay(b *testing.B) {
	eachSetting(b, func(b *testing.B, synchronous string, conc int) {
		_, e, insert, selectPK := benchSetup(b, synchronous)
		ctx := b.Context()
		value := []byte(benchValue)
		fn := func(context.Context) ([]byte, error) { return value, nil }
		const keys = 1024
		for i := range keys {
			if _, err := e.Run(ctx, "order-"+strconv.Itoa(i), fn, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := insert.ExecContext(ctx, storeKey("floor", i), value); err != nil {
				b.Fatal(err)
			}
		}
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true}, func(i int) error {
			res, err := e.Run(ctx, "order-"+strconv.Itoa(i%keys), fn, nil)
			if err == nil && !res.Replayed {
				return fmt.Errorf("key %d ran again", i%keys)
			}
			return err
		}, floorbench.Floor{Name: "select", Op: func(i int) error {
			var v []byte
			return selectPK.QueryRowContext(ctx, storeKey("floor", i%keys)).Scan(&v)
		}})
	})
}

// BenchmarkRunTx: every call runs fn, which inserts one business row, in a
// transaction with its claim and outcome. Floor: the same INSERT in a
// transaction of its own, without idem.
func BenchmarkRunTx(b *testing.B) {
	eachSetting(b, func(b *testing.B, synchronous string, conc int) {
		db, e, _, _ := benchSetup(b, synchronous)
		ctx := b.Context()
		floorbench.Compare(b, floorbench.Options{Conc: conc, Latency: true}, func(i int) error {
			key := "order-" + strconv.Itoa(i)
			_, err := idem.RunTx(ctx, e, key, func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
				_, err := tx.ExecContext(ctx, "INSERT INTO business (id, fence) VALUES (?, 1)", key)
				return []byte(benchValue), err
			}, nil)
			return err
		}, floorbench.Floor{Name: "tx", Op: func(i int) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO business (id, fence) VALUES (?, 1)", "floor-"+strconv.Itoa(i)); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit()
		}})
	})
}
