// Package sqlitedb is payd's database on one SQLite file, through
// database/sql: the database.DB the domain runs on.
package sqlitedb

import (
	"context"
	"database/sql"
	"strings"

	"github.com/idemhq/idem/payd/internal/database"
)

// WriteQueue is the process's queue for SQLite's one write lock, which
// the idempotency store keeps (sqlitestore.Store): payd's writes wait in
// it with the store's.
type WriteQueue interface {
	// Write runs f holding the write lock, within the queue's bound.
	Write(ctx context.Context, f func(ctx context.Context) error) error
	// Conflict reports whether err means the database was busy: another
	// process held its write lock past the queue's bound.
	Conflict(err error) bool
}

// DB is a database.DB on a SQLite file.
type DB struct {
	querier
	db    *sql.DB
	queue WriteQueue
}

var _ database.DB = (*DB)(nil)

// New returns the DB on db, a database opened by sqlitestore.OpenDB (its
// transactions immediate), whose writes wait in queue. db stays the
// caller's to close.
func New(db *sql.DB, queue WriteQueue) *DB {
	return &DB{querier: querier{db}, db: db, queue: queue}
}

// Tx is the database.Querier of tx: a request's transaction, begun by the
// idempotency store on the same database.
func Tx(tx *sql.Tx) database.Querier { return querier{tx} }

// Dialect is database.SQLite.
func (db *DB) Dialect() database.Dialect { return database.SQLite }

// InTx runs fn in a transaction of its own, in the write queue.
func (db *DB) InTx(ctx context.Context, fn func(tx database.Querier) error) error {
	return db.queue.Write(ctx, func(ctx context.Context) error { return db.inOwnTx(ctx, fn) })
}

// Write runs f in the write queue.
func (db *DB) Write(ctx context.Context, f func(ctx context.Context) error) error {
	return db.queue.Write(ctx, f)
}

// Busy reports whether err is the queue's busy database.
func (db *DB) Busy(err error) bool { return db.queue.Conflict(err) }

// Migrate runs apply in a transaction of its own, immediate: its write
// lock keeps other processes' migrations out. It is not in the write
// queue, whose writes end at the queue's bound.
func (db *DB) Migrate(ctx context.Context, apply func(ctx context.Context, tx database.Querier) error) error {
	return db.inOwnTx(ctx, func(tx database.Querier) error { return apply(ctx, tx) })
}

// Ping reports whether the file answers.
func (db *DB) Ping(ctx context.Context) error { return db.db.PingContext(ctx) }

// MissingTable reports whether err is SQLite's "no such table".
func (db *DB) MissingTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}

// inOwnTx runs fn in a transaction of its own, immediate: the database
// asks for them (sqlitestore.OpenDB).
func (db *DB) inOwnTx(ctx context.Context, fn func(tx database.Querier) error) error {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(querier{tx}); err != nil {
		return err
	}
	return tx.Commit()
}
