package pgstore

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
)

// Migrations returns the store's schema changes for schema ("" means
// DefaultSchema), for teams that apply schema with their own tool (goose,
// atlas, psql -f): the numbered files NNNN_what.sql, in the order to
// apply them, with the schema filled in. Each file is one script to run
// whole, in one transaction, and records itself in schema.idem_migrations
// as Migrate would, so Migrate run afterwards finds nothing to do
// (TestExportedMigrationsMatchMigrate). Migrate stays the documented
// default. A migration tool that splits files on semicolons needs each
// file marked as one statement: the functions' bodies hold semicolons.
func Migrations(schema string) fs.FS {
	if schema == "" {
		schema = DefaultSchema
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		panic(err) // a malformed pattern: a bug in this package
	}
	sort.Strings(names)
	out := fstest.MapFS{}
	for _, name := range names {
		body, err := migrations.ReadFile(name)
		if err != nil {
			panic(err) // embedded files are always readable
		}
		base := strings.TrimPrefix(name, "migrations/")
		script := fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %[1]s;\n%[2]s;\n%[3]s\n;\nINSERT INTO %[1]s.idem_migrations (name) VALUES ('%[4]s') ON CONFLICT (name) DO NOTHING;\n",
			quoted, migrationsTable(quoted), strings.ReplaceAll(string(body), "{{schema}}", quoted), base)
		out[base] = &fstest.MapFile{Data: []byte(script), Mode: 0o444}
	}
	return out
}

// migrationsTable is the statement that creates the table where Migrate
// records each migration it applied.
func migrationsTable(quotedSchema string) string {
	return `CREATE TABLE IF NOT EXISTS ` + quotedSchema + `.idem_migrations (
			name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`
}
