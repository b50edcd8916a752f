package pgstore_test

import (
	"context"
	"crypto/rand"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/store"
)

// TestExportedMigrationsMatchMigrate: the files Migrations returns,
// applied one by one as another tool would, give the schema Migrate gives,
// record themselves so that Migrate afterwards applies nothing, and leave a
// store that works.
func TestExportedMigrationsMatchMigrate(t *testing.T) {
	pool := newPool(t)
	byMigrate := newStore(t, pool, pgstore.Config{}) // a schema Migrate made

	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	files, err := pgstore.Migrations(schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Migrations(`Weird"Name`); err == nil {
		t.Error(`Migrations("Weird\"Name") = nil error, want the schema refused as Config.Schema refuses it`)
	}
	names, err := fs.Glob(files, "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("Migrations holds %v (%v), want the numbered files", names, err)
	}
	if !slices.IsSorted(names) || !strings.HasPrefix(names[0], "0001_") {
		t.Fatalf("files %v: want NNNN_ names from 0001, in order", names)
	}
	for _, name := range names {
		body, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(body), "{{schema}}") {
			t.Fatalf("%s still holds the schema placeholder", name)
		}
		if _, err := pool.Exec(t.Context(), string(body)); err != nil {
			t.Fatalf("apply %s as a script: %v", name, err)
		}
	}

	s, err := pgstore.New(t.Context(), pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := appliedMigrations(t, pool, schema)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after the exported files: %v", err)
	}
	if after := appliedMigrations(t, pool, schema); !slices.Equal(before, after) || len(after) != len(names) {
		t.Fatalf("idem_migrations went from %v to %v, want the %d files recorded before Migrate, and Migrate applying none", before, after, len(names))
	}
	if exported, migrated := schemaShape(t, pool, schema), schemaShape(t, pool, pgstore.SchemaOf(byMigrate)); exported != migrated {
		t.Fatalf("schema from the exported files:\n%s\nschema from Migrate:\n%s", exported, migrated)
	}

	cr, err := s.Claim(t.Context(), store.ClaimParams{Key: "k", Owner: "o", LeaseTTL: time.Minute, Retention: time.Hour})
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("Claim on the exported schema = (%v, %v), want acquired", cr.Status, err)
	}
}

func appliedMigrations(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT name FROM "+pgx.Identifier{schema}.Sanitize()+".idem_migrations ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// schemaShape describes a schema's tables, columns, indexes and functions,
// with the schema's name taken out, for comparing two schemas.
func schemaShape(t *testing.T, pool *pgxpool.Pool, schema string) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
		   FROM information_schema.columns WHERE table_schema = $1 ORDER BY 1`,
		`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1`,
		`SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' || md5(replace(p.prosrc, $1, '<schema>'))
		   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 ORDER BY 1`,
	} {
		rows, err := pool.Query(t.Context(), q, schema)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			b.WriteString(strings.ReplaceAll(l, schema, "<schema>") + "\n")
		}
	}
	return b.String()
}
