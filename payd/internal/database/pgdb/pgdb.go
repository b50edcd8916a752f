// Package pgdb is payd's database on PostgreSQL, through a pgx pool: the
// database.DB the domain runs on.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem/payd/internal/database"
)

// defaultMaxConns is the pool's size unless the URL sets pool_max_conns.
const defaultMaxConns = 32

// Connect opens a pool on the postgres:// or postgresql:// url and checks
// that the server answers. The caller closes the pool, after every user of
// it (DB, the idempotency store) is done.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("payments: database URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (4 on a small machine) starves the API and the
		// workers of each other; pool_max_conns in the URL overrides this.
		cfg.MaxConns = defaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("payments: connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("payments: PostgreSQL at %s does not answer: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}

// DB is a database.DB on a pgx pool. PostgreSQL needs no write queue: its
// writers wait for the rows they need, not for the database.
type DB struct {
	querier
	pool *pgxpool.Pool
}

var _ database.DB = (*DB)(nil)

// New returns the DB on pool, which stays the caller's to close.
func New(pool *pgxpool.Pool) *DB {
	return &DB{querier: querier{pool}, pool: pool}
}

// Tx is the database.Querier of tx: a request's transaction, begun by the
// idempotency store on the same pool.
func Tx(tx pgx.Tx) database.Querier { return querier{tx} }

// Dialect is database.Postgres.
func (db *DB) Dialect() database.Dialect { return database.Postgres }

// InTx runs fn in a transaction of its own.
func (db *DB) InTx(ctx context.Context, fn func(tx database.Querier) error) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return fn(querier{tx}) })
}

// Write runs f as it is: PostgreSQL has no write queue.
func (db *DB) Write(ctx context.Context, f func(ctx context.Context) error) error { return f(ctx) }

// Busy is always false on PostgreSQL.
func (db *DB) Busy(error) bool { return false }

// Migrate runs apply in a transaction holding an advisory lock, so that
// replicas starting together migrate one at a time.
func (db *DB) Migrate(ctx context.Context, apply func(ctx context.Context, tx database.Querier) error) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payd migrate'))`); err != nil {
			return err
		}
		return apply(ctx, querier{tx})
	})
}

// Ping reports whether the server answers.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// MissingTable reports whether err is PostgreSQL's undefined_table.
func (db *DB) MissingTable(err error) bool {
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pe.Code == "42P01"
}
