package payments

import (
	"regexp"
	"strings"

	"github.com/idemhq/idem/payd/internal/database"
)

// payd's SQL is written once, in PostgreSQL's placeholder style ($1), with
// {{now}} for the database's clock in Unix milliseconds; a dialect rewrites
// it for SQLite (?1, unixepoch). Everything else is common SQL.
type dialect struct {
	name       string
	now        string // the database clock, Unix milliseconds
	skipLocked string // appended to a queue's row-locking subquery
	forUpdate  string // appended to a read that locks its row
}

var (
	postgres = dialect{
		name:       "postgres",
		now:        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
		skipLocked: " FOR UPDATE SKIP LOCKED",
		forUpdate:  " FOR UPDATE",
	}
	sqlite = dialect{
		name: "sqlite",
		now:  "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
	}
)

// dialectOf is the dialect of a database.
func dialectOf(d database.Dialect) dialect {
	if d == database.Postgres {
		return postgres
	}
	return sqlite
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

// jsonStrings is an IN list of the strings in the JSON array parameter p.
func (d dialect) jsonStrings(p string) string {
	if d.name == "postgres" {
		return `(SELECT jsonb_array_elements_text(` + p + `::jsonb))`
	}
	return `(SELECT value FROM json_each(` + p + `))`
}

// sql fills in the dialect's clock and placeholders.
func (d dialect) sql(q string) string {
	q = strings.ReplaceAll(q, "{{now}}", d.now)
	q = strings.ReplaceAll(q, "{{skip_locked}}", d.skipLocked)
	q = strings.ReplaceAll(q, "{{for_update}}", d.forUpdate)
	if d.name == "sqlite" {
		q = placeholder.ReplaceAllString(q, "?$1")
	}
	return q
}
