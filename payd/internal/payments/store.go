package payments

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
)

// Store is payd's database of accounts, payments and refunds, and its
// ledger. The caller opens db (package pgdb or sqlitedb) on the same
// database as the idempotency store, so that a payment and the outcome of
// the request that created it commit together, and closes it after the
// Store's last use.
type Store struct {
	db      database.DB
	dialect dialect
	sql     statements
	log     *slog.Logger
	metrics *Metrics // set by NewMetrics; nil counts nothing
}

// New returns the Store on db. It runs no DDL: call Migrate.
func New(db database.DB, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := dialectOf(db.Dialect())
	return &Store{db: db, dialect: d, sql: newStatements(d), log: log}
}

// Dialect names the database: "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect.name }

// Now reads the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var ms int64
	err := s.db.QueryRow(ctx, s.dialect.sql(`SELECT {{now}}`)).Scan(&ms)
	return fromMillis(ms), wrap("read the clock", err)
}

// execWrite runs one write statement on the pool, in the write queue.
func (s *Store) execWrite(ctx context.Context, stmt string, args ...any) error {
	return s.db.Write(ctx, func(ctx context.Context) error {
		_, err := s.db.Exec(ctx, stmt, args...)
		return err
	})
}

// inRequestTx runs fn in the request's transaction, if ctx carries one
// (database.WithTx), and else in a transaction of its own.
func (s *Store) inRequestTx(ctx context.Context, fn func(tx database.Querier) error) error {
	if tx, ok := database.TxFrom(ctx); ok {
		return fn(tx)
	}
	return s.db.InTx(ctx, fn)
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("payments: %s: %w", op, err)
}
