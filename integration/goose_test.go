package integration_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// TestGooseAppliesPgstoreMigrations: goose, as a team's own migration
// tool, applies pgstore.Migrations, and the store then works and its
// Migrate has nothing left to do.
func TestGooseAppliesPgstoreMigrations(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{schema + "_goose"}.Sanitize())
	})
	files, err := pgstore.Migrations(schema)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	gooseUp(t, goose.DialectPostgres, db, files, schema+"_goose")

	s, err := pgstore.New(t.Context(), pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after goose: %v", err)
	}
	claimWorks(t, s)
}

// TestGooseAppliesSqlitestoreMigrations is the same for SQLite.
func TestGooseAppliesSqlitestoreMigrations(t *testing.T) {
	db, err := sqlitestore.OpenDB(t.Context(), filepath.Join(t.TempDir(), "goose.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gooseUp(t, goose.DialectSQLite3, db, sqlitestore.Migrations(), "goose_db_version")

	s, err := sqlitestore.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	claimWorks(t, s) // before Migrate: the store finds its schema
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after goose: %v", err)
	}
}

// gooseUp applies every file of files with goose, keeping goose's own
// versions in table, and checks that goose applied them all.
func gooseUp(t *testing.T, dialect goose.Dialect, db *sql.DB, files fs.FS, table string) {
	t.Helper()
	p, err := goose.NewProvider(dialect, db, files, goose.WithTableName(table))
	if err != nil {
		t.Fatalf("goose.NewProvider: %v", err)
	}
	results, err := p.Up(t.Context())
	if err != nil {
		t.Fatalf("goose up: %v", err)
	}
	names, _ := fs.Glob(files, "*.sql")
	if len(results) != len(names) || len(names) == 0 {
		t.Fatalf("goose applied %d migrations, want all %d", len(results), len(names))
	}
}

func claimWorks(t *testing.T, s store.Store) {
	t.Helper()
	cr, err := s.Claim(t.Context(), store.ClaimParams{Key: "k/" + rand.Text(), Owner: "o", LeaseTTL: time.Minute, Retention: time.Hour})
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim on the schema goose made = (%v, %v), want acquired", cr.Status, err)
	}
}
