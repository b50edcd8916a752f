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
// DefaultSchema, and a name Config.Schema refuses is refused), for teams
// that apply schema with their own tool: the numbered files NNNN_what.sql,
// in the order to apply them, with the schema filled in. Each file is one
// script to run whole and in one transaction, as psql -1 -v
// ON_ERROR_STOP=1 -f does, and as goose does with the annotations each
// file carries; it records itself in schema.idem_migrations as Migrate
// would, so Migrate run afterwards finds nothing to do
// (TestExportedMigrationsMatchMigrate). Run outside a transaction, a file
// that fails half-way would still record itself. Migrate stays the
// documented default.
func Migrations(schema string) (fs.FS, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	if err := checkSchema(schema); err != nil {
		return nil, err
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
		script := fmt.Sprintf(scriptLayout, quoted, migrationsTable(quoted), strings.ReplaceAll(string(body), "{{schema}}", quoted), base)
		out[base] = &fstest.MapFile{Data: []byte(script), Mode: 0o444}
	}
	return out, nil
}

// scriptLayout wraps one migration for another tool: apply it whole, in
// one transaction; goose reads the annotations, every other tool sees
// comments.
const scriptLayout = `-- +goose Up
-- +goose StatementBegin
-- Apply this file whole, in one transaction (psql -1 -v ON_ERROR_STOP=1 -f).
-- It records itself in %[1]s.idem_migrations, as pgstore's Migrate would.
CREATE SCHEMA IF NOT EXISTS %[1]s;
%[2]s;
%[3]s
;
INSERT INTO %[1]s.idem_migrations (name) VALUES ('%[4]s') ON CONFLICT (name) DO NOTHING;
-- +goose StatementEnd
`

// migrationsTable is the statement that creates the table where Migrate
// records each migration it applied.
func migrationsTable(quotedSchema string) string {
	return `CREATE TABLE IF NOT EXISTS ` + quotedSchema + `.idem_migrations (
			name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`
}
