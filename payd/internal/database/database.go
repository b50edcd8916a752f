// Package database is the seam between payd's domain and the database it
// keeps payments in: DB, the operations the domain needs of either
// database, and Querier, the statements it runs. Package pgdb implements
// them for PostgreSQL through pgx, package sqlitedb for SQLite through
// database/sql; the domain (package payments) sees only this package.
//
// payd's SQL is written once, by the domain, in the dialect DB.Dialect
// names; a DB runs it as given.
package database

import (
	"context"
	"errors"
)

// Dialect names the SQL a database speaks.
type Dialect string

// The databases payd runs on.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DB is payd's database, as the domain uses it. Its Querier methods run
// each statement on its own, on the pool, outside any transaction; a
// write among them belongs in Write.
type DB interface {
	Querier

	// Dialect names the SQL the database speaks.
	Dialect() Dialect

	// InTx runs fn in a transaction of its own, committed if fn returns
	// nil and rolled back otherwise. It writes in the database's write
	// queue (Write), and fn may run again if the database was busy.
	InTx(ctx context.Context, fn func(tx Querier) error) error

	// Write runs f, writes on the pool, in the database's write queue:
	// SQLite's one write lock is taken in turn with the idempotency
	// store's writes instead of through SQLite's busy handler, whose
	// sleeps were the tail of a charge's latency. PostgreSQL needs no
	// queue. Neither Write nor InTx may run inside a request's
	// transaction (WithTx), which holds that queue: write there through
	// the request's transaction.
	Write(ctx context.Context, f func(ctx context.Context) error) error

	// Busy reports whether a write failed only because another process
	// held SQLite's write lock past the queue's bound. It is always false
	// on PostgreSQL, whose writers wait for the rows they need, not the
	// database.
	Busy(err error) bool

	// Migrate runs apply in a transaction of its own, one process at a
	// time, outside the write queue: a migration may take long, and runs
	// before any other write.
	Migrate(ctx context.Context, apply func(ctx context.Context, tx Querier) error) error

	// Ping reports whether the database answers.
	Ping(ctx context.Context) error

	// MissingTable reports whether err says a table does not exist.
	MissingTable(err error) bool
}

// Querier runs statements on a pool or inside a transaction.
type Querier interface {
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Row is the result of QueryRow. Its Scan returns ErrNoRows when the query
// found nothing.
type Row interface {
	Scan(dest ...any) error
}

// Rows is the result of Query: call Next before each Scan, then Err, and
// Close when done.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// ErrNoRows is returned by a Row's Scan when the query found nothing, on
// either database. Its text is the one payd's errors have always carried.
var ErrNoRows = errors.New("payments: no rows")
