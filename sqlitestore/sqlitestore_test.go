package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
	"github.com/idemhq/idem/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openDB opens the database file name in dir with sqlitestore.OpenDB,
// closing it when the test ends.
func openDB(t testing.TB, dir, name string) *sql.DB {
	t.Helper()
	db, err := sqlitestore.OpenDB(t.Context(), filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close db: %v", err)
		}
	})
	return db
}

// newDB opens a database file of the test's own.
func newDB(t testing.TB) *sql.DB {
	t.Helper()
	return openDB(t, t.TempDir(), "idem.db")
}

// newStore returns a migrated Store on db, closed when the test ends
// (before db, as cleanups run last first).
func newStore(t testing.TB, db *sql.DB, cfg *sqlitestore.Config) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.New(db, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// conformanceConfig makes the polling fallback too slow to pass the
// suite's wake-up subtests: they must be won by notification.
var conformanceConfig = sqlitestore.Config{PollInterval: time.Minute}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStore(t, newDB(t), &conformanceConfig)
	})
}

// business is the caller's table in the transactional tests: one row per
// write of fn.
const business = `CREATE TABLE business (id TEXT NOT NULL, fence INTEGER NOT NULL)`

func createBusiness(t testing.TB, db *sql.DB) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), business); err != nil {
		t.Fatalf("create business table: %v", err)
	}
}

func insertRow(ctx context.Context, tx *sql.Tx, id string) error {
	l, _ := idem.LeaseFrom(ctx)
	_, err := tx.ExecContext(ctx, "INSERT INTO business (id, fence) VALUES (?, ?)", id, l.Fence)
	return err
}

func countRows(ctx context.Context, db *sql.DB, id string) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM business WHERE id = ?", id).Scan(&n)
	return n, err
}

// TestConformanceTx runs the transactional suite, each subtest on a file
// of its own. The suite counts rows by the caller key it wrote them under,
// which starts with the subtest's name: that finds the subtest's database.
func TestConformanceTx(t *testing.T) {
	var dbs sync.Map // subtest name → *sql.DB
	storetest.RunTx(t, func(t *testing.T) store.TxStore[*sql.Tx] {
		db := newDB(t)
		createBusiness(t, db)
		dbs.Store(t.Name(), db)
		return newStore(t, db, &conformanceConfig)
	}, storetest.Rows[*sql.Tx]{
		Insert: insertRow,
		Count: func(ctx context.Context, id string) (int, error) {
			name := id[:max(strings.LastIndex(id, "/"), 0)]
			db, ok := dbs.Load(name)
			if !ok {
				return 0, fmt.Errorf("no database for subtest %q", name)
			}
			return countRows(ctx, db.(*sql.DB), id)
		},
	})
}
