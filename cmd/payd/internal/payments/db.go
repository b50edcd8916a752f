package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// payd speaks to PostgreSQL through pgx and to SQLite through database/sql.
// Its SQL is written once, in PostgreSQL's placeholder style ($1), with
// {{now}} for the database's clock in Unix milliseconds; a dialect rewrites
// it for SQLite (?1, unixepoch). Everything else is common SQL.

// querier runs statements on a pool or inside a transaction, of either
// driver.
type querier interface {
	exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	queryRow(ctx context.Context, query string, args ...any) scanner
	query(ctx context.Context, query string, args ...any) (rows, error)
}

type scanner interface{ Scan(dest ...any) error }

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// errNoRows is returned by a scanner when a query found nothing.
var errNoRows = errors.New("payments: no rows")

type dialect struct {
	name       string
	now        string // the database clock, Unix milliseconds
	skipLocked string // appended to a queue's row-locking subquery
}

var (
	postgres = dialect{
		name:       "postgres",
		now:        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
		skipLocked: " FOR UPDATE SKIP LOCKED",
	}
	sqlite = dialect{
		name: "sqlite",
		now:  "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
	}
)

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
	if d.name == "sqlite" {
		q = placeholder.ReplaceAllString(q, "?$1")
	}
	return q
}

// pgxQuerier runs on a pgx pool or transaction.
type pgxQuerier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
}

func (p pgxQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (p pgxQuerier) queryRow(ctx context.Context, query string, args ...any) scanner {
	return pgxRow{p.q.QueryRow(ctx, query, args...)}
}

func (p pgxQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	r, err := p.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

type pgxRow struct{ row pgx.Row }

func (r pgxRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}

// sqlQuerier runs on a *sql.DB or *sql.Tx.
type sqlQuerier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}
}

func (s sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) queryRow(ctx context.Context, query string, args ...any) scanner {
	return sqlRow{s.q.QueryRowContext(ctx, query, args...)}
}

func (s sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	r, err := s.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

type sqlRow struct{ row *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("payments: %s: %w", op, err)
}

// missingTable reports whether err says a table does not exist.
func missingTable(err error) bool {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code == "42P01" // undefined_table
	}
	return err != nil && strings.Contains(err.Error(), "no such table")
}
