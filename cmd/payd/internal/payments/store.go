package payments

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// defaultMaxConns is the PostgreSQL pool's size unless the URL sets
// pool_max_conns.
const defaultMaxConns = 32

// Store is payd's database: accounts, payments and the idempotency records,
// in one PostgreSQL database or one SQLite file, so that a payment and the
// outcome of the request that created it commit together.
type Store struct {
	url     string
	dialect dialect
	pool    querier
	idem    store.Store
	sql     statements
	log     *slog.Logger

	// txFrom finds the transaction idemhttp.MiddlewareTx runs a handler in.
	txFrom func(ctx context.Context) (querier, bool)
	// middleware is idemhttp.MiddlewareTx for the store's transaction type.
	middleware func(e *idem.Engine, principal func(*http.Request) (string, error), cfg *idemhttp.Config) (func(http.Handler) http.Handler, error)
	// inTx runs fn in a transaction of its own, committed if fn returns
	// nil and rolled back otherwise. On SQLite it is in the write queue
	// (write), and fn may run again if the database was busy.
	inTx func(ctx context.Context, fn func(q querier) error) error
	// write runs f, writes on the pool, in the database's write queue:
	// SQLite's one write lock is taken in turn with the idempotency
	// store's writes (sqlitestore.Store.Write) instead of through SQLite's
	// busy handler, whose sleeps were the tail of a charge's latency.
	// PostgreSQL needs no queue. Neither write nor inTx may run inside a
	// request's transaction (Middleware), which holds that queue: write
	// there through the request's transaction (inRequestTx).
	write func(ctx context.Context, f func(ctx context.Context) error) error
	// busy reports whether a write failed only because another process
	// held SQLite's write lock past the queue's bound; nil on PostgreSQL,
	// whose writers wait for the rows they need, not the database.
	busy    func(err error) bool
	migrate func(ctx context.Context) error
	ping    func(ctx context.Context) error
	closers []func()
}

// Open connects to url: a postgres:// or postgresql:// URL, or else a path
// to a SQLite file (created if missing). It runs no DDL: call Migrate.
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		s   *Store
		err error
	)
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		s, err = openPostgres(ctx, url, log)
	} else {
		s, err = openSQLite(ctx, url, log)
	}
	if err != nil {
		return nil, err
	}
	s.url = url
	return s, nil
}

func openPostgres(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
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
	is, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: "idem", Logger: log})
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{
		dialect: postgres,
		pool:    pgxQuerier{pool},
		idem:    is,
		log:     log,
		txFrom: func(ctx context.Context) (querier, bool) {
			tx, ok := idemhttp.TxFrom[pgx.Tx](ctx)
			return pgxQuerier{tx}, ok
		},
		middleware: idemhttp.MiddlewareTx[pgx.Tx],
		inTx: func(ctx context.Context, fn func(q querier) error) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(pgxQuerier{tx}) })
		},
		write:   func(ctx context.Context, f func(ctx context.Context) error) error { return f(ctx) },
		ping:    pool.Ping,
		closers: []func(){func() { is.Close() }, pool.Close},
	}
	s.migrate = func(ctx context.Context) error {
		if err := is.Migrate(ctx); err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payd migrate'))`); err != nil {
				return err
			}
			return s.applyMigrations(ctx, pgxQuerier{tx}, "")
		})
	}
	s.sql = newStatements(s.dialect)
	return s, nil
}

func openSQLite(ctx context.Context, path string, log *slog.Logger) (*Store, error) {
	db, err := sqlitestore.OpenDB(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("payments: open SQLite file %s: %w", path, err)
	}
	is, err := sqlitestore.New(db, &sqlitestore.Config{Logger: log})
	if err != nil {
		db.Close()
		return nil, err
	}
	// inOwnTx runs fn in a transaction of its own, immediate: Open asks
	// for them.
	inOwnTx := func(ctx context.Context, fn func(q querier) error) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(sqlQuerier{tx}); err != nil {
			return err
		}
		return tx.Commit()
	}
	s := &Store{
		dialect: sqlite,
		pool:    sqlQuerier{db},
		idem:    is,
		log:     log,
		txFrom: func(ctx context.Context) (querier, bool) {
			tx, ok := idemhttp.TxFrom[*sql.Tx](ctx)
			return sqlQuerier{tx}, ok
		},
		middleware: idemhttp.MiddlewareTx[*sql.Tx],
		inTx: func(ctx context.Context, fn func(q querier) error) error {
			return is.Write(ctx, func(ctx context.Context) error { return inOwnTx(ctx, fn) })
		},
		write:   is.Write,
		busy:    is.Conflict,
		ping:    db.PingContext,
		closers: []func(){func() { is.Close() }, func() { db.Close() }},
	}
	s.migrate = func(ctx context.Context) error {
		if err := is.Migrate(ctx); err != nil {
			return err
		}
		// Not in the write queue, whose writes end at its BusyTimeout: a
		// migration may take long, and runs before any other write.
		return inOwnTx(ctx, func(q querier) error { return s.applyMigrations(ctx, q, "") })
	}
	s.sql = newStatements(s.dialect)
	return s, nil
}

// Close closes the idempotency store and the database.
func (s *Store) Close() {
	for _, c := range s.closers {
		c()
	}
}

// Dialect names the database: "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect.name }

// IdemStore is the store of idempotency records, in the same database.
func (s *Store) IdemStore() store.Store { return s.idem }

// Middleware is idemhttp.MiddlewareTx for this database: handlers under it
// write through the transaction that records their response, and Create
// finds that transaction in the request's context.
func (s *Store) Middleware(e *idem.Engine, principal func(*http.Request) (string, error), cfg *idemhttp.Config) (func(http.Handler) http.Handler, error) {
	return s.middleware(e, principal, cfg)
}

//go:embed migrations
var migrations embed.FS

// Migrate applies the idempotency store's schema and payd's own, each
// migration once, safely from several processes at a time.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.migrate(ctx); err != nil {
		return fmt.Errorf("payments: migrate: %w", err)
	}
	return nil
}

func (s *Store) migrationNames() ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/"+s.dialect.name+"/*.sql")
	sort.Strings(names)
	return names, err
}

// applyMigrations runs, in the caller's transaction, the migrations not
// recorded yet in payd_migrations, those before until if it is not ""
// (as a database of that age has them, for the migrations' tests).
func (s *Store) applyMigrations(ctx context.Context, q querier, until string) error {
	if _, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS payd_migrations (name text PRIMARY KEY, applied_at bigint NOT NULL)`); err != nil {
		return err
	}
	names, err := s.migrationNames()
	if err != nil {
		return err
	}
	for _, name := range names {
		base := name[strings.LastIndex(name, "/")+1:]
		if until != "" && base >= until {
			break
		}
		var n int
		if err := q.queryRow(ctx, s.dialect.sql(`SELECT count(*) FROM payd_migrations WHERE name = $1`), base).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := q.exec(ctx, string(body)); err != nil {
			return fmt.Errorf("apply %s: %w", base, err)
		}
		if _, err := q.exec(ctx, s.dialect.sql(`INSERT INTO payd_migrations (name, applied_at) VALUES ($1, {{now}})`), base); err != nil {
			return err
		}
	}
	return nil
}

// Ready reports whether the database answers and every migration is
// applied, saying which part is not.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	names, err := s.migrationNames()
	if err != nil {
		return err
	}
	const apply = "run payd migrate, or start payd once with --migrate"
	var n int
	switch err := s.pool.queryRow(ctx, `SELECT count(*) FROM payd_migrations`).Scan(&n); {
	case missingTable(err):
		return fmt.Errorf("no migrations applied (%s)", apply)
	case err != nil:
		return fmt.Errorf("database unreachable: %w", err)
	case n < len(names):
		return fmt.Errorf("%d of %d migrations applied (%s)", n, len(names), apply)
	}
	return nil
}

// Now reads the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var ms int64
	err := s.pool.queryRow(ctx, s.dialect.sql(`SELECT {{now}}`)).Scan(&ms)
	return fromMillis(ms), wrap("read the clock", err)
}

// execWrite runs one write statement on the pool, in the write queue.
func (s *Store) execWrite(ctx context.Context, stmt string, args ...any) error {
	return s.write(ctx, func(ctx context.Context) error {
		_, err := s.pool.exec(ctx, stmt, args...)
		return err
	})
}

// inRequestTx runs fn in the transaction of ctx, if a handler runs under
// Middleware, and else in a transaction of its own.
func (s *Store) inRequestTx(ctx context.Context, fn func(q querier) error) error {
	if q, ok := s.txFrom(ctx); ok {
		return fn(q)
	}
	return s.inTx(ctx, fn)
}
