package sqlitestore_test

import (
	"database/sql"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// TestExportedMigrationsMatchMigrate: the files Migrations returns,
// applied one by one as another tool would, give the schema Migrate gives,
// record themselves so that Migrate afterwards applies nothing, and leave a
// store that works without Migrate.
func TestExportedMigrationsMatchMigrate(t *testing.T) {
	dir := t.TempDir()
	migrated := openDB(t, dir, "migrate.db")
	newStore(t, migrated, nil)

	db := openDB(t, dir, "tool.db")
	files := sqlitestore.Migrations()
	names, err := fs.Glob(files, "*.sql")
	if err != nil || len(names) == 0 || !slices.IsSorted(names) || !strings.HasPrefix(names[0], "0001_") {
		t.Fatalf("Migrations holds %v (%v), want the numbered files from 0001, in order", names, err)
	}
	for _, name := range names {
		body, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(t.Context(), string(body)); err != nil {
			t.Fatalf("apply %s as a script: %v", name, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	// The store works on the tool's schema before any Migrate.
	s, err := sqlitestore.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cr, err := s.Claim(t.Context(), store.ClaimParams{Key: "k", Owner: "o", LeaseTTL: time.Minute, Retention: time.Hour})
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim on the exported schema = (%v, %v), want acquired", cr.Status, err)
	}
	before := applied(t, db)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after the exported files: %v", err)
	}
	if after := applied(t, db); !slices.Equal(before, after) || len(after) != len(names) {
		t.Fatalf("idem_migrations went from %v to %v, want the %d files recorded before Migrate, and Migrate applying none", before, after, len(names))
	}
	if a, b := schema(t, db), schema(t, migrated); a != b {
		t.Fatalf("schema from the exported files:\n%s\nschema from Migrate:\n%s", a, b)
	}
}

func applied(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT version || ' ' || name FROM idem_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// schema returns the database's tables and indexes as SQLite keeps them.
func schema(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema ORDER BY type, name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(strings.Fields(s), " ") + "\n")
	}
	return b.String()
}
