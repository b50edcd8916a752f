// Package dbtest opens payd's database for a test as payd's commands open
// it (cmd/payd's openStorage): a database.DB on a SQLite file or a
// PostgreSQL URL, and the idempotency store in the same database.
package dbtest

import (
	"context"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/database/pgdb"
	"github.com/idemhq/idem/payd/internal/database/sqlitedb"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// Database is payd's database, open for one test.
type Database struct {
	DB database.DB
	// Idem is the idempotency store in the same database. On SQLite, DB's
	// writes wait in its write queue.
	Idem IdemStore
}

// IdemStore is an idempotency store that applies its own schema.
type IdemStore interface {
	store.Store
	Migrate(ctx context.Context) error
}

// Open opens url, a postgres:// URL or a SQLite file path, with no
// migration applied; it is closed when t ends.
func Open(t testing.TB, url string) *Database {
	t.Helper()
	ctx := t.Context()
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		pool, err := pgdb.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		is, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: "idem"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { is.Close() })
		return &Database{DB: pgdb.New(pool), Idem: is}
	}
	db, err := sqlitestore.OpenDB(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	is, err := sqlitestore.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { is.Close() })
	return &Database{DB: sqlitedb.New(db, is), Idem: is}
}
