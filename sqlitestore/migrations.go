package sqlitestore

import (
	"fmt"
	"io/fs"
	"strings"
	"testing/fstest"
)

// migrationsTable creates the table where Migrate records each migration
// it applied.
const migrationsTable = `CREATE TABLE IF NOT EXISTS idem_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`

// Migrations returns the store's schema changes, for teams that apply
// schema with their own tool: the numbered files NNNN_what.sql, in the
// order to apply them. Each file is one script to run whole and in one
// transaction, as goose does with the annotations each file carries (with
// the sqlite3 shell, wrap it in BEGIN and COMMIT and use -bail); it
// records itself in idem_migrations as Migrate would, so that the store
// finds its schema and Migrate run afterwards finds nothing to do
// (TestExportedMigrationsMatchMigrate). Run outside a transaction, a file
// that fails half-way would still record itself. Migrate stays the
// documented default.
func Migrations() fs.FS {
	out := fstest.MapFS{}
	for _, m := range migrations {
		script := fmt.Sprintf(scriptLayout, migrationsTable, strings.TrimSpace(m.sql), m.version, m.name)
		out[m.name] = &fstest.MapFile{Data: []byte(script), Mode: 0o444}
	}
	return out
}

// scriptLayout wraps one migration for another tool: apply it whole, in
// one transaction; goose reads the annotations, every other tool sees
// comments.
const scriptLayout = `-- +goose Up
-- +goose StatementBegin
-- Apply this file whole, in one transaction.
-- It records itself in idem_migrations, as sqlitestore's Migrate would.
%s;
%s
;
INSERT OR IGNORE INTO idem_migrations (version, name, applied_at) VALUES (%d, '%s', CAST(strftime('%%s', 'now') AS INTEGER) * 1000);
-- +goose StatementEnd
`
