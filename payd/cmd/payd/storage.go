package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/database/pgdb"
	"github.com/idemhq/idem/payd/internal/database/sqlitedb"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// storage is payd's database as a command opens it: the payments store
// and, in the same PostgreSQL database or SQLite file, the idempotency
// store, so that a payment and the outcome of the request that created it
// commit together.
type storage struct {
	payments *payments.Store
	idem     idemStore
	// tx is the transaction type of idem, for the API's Idempotency-Key
	// middleware.
	tx    api.TxType
	close func()
}

// idemStore is what payd's commands need of an idempotency store.
type idemStore interface {
	store.Store
	Migrate(ctx context.Context) error
}

// openStorage opens url: a postgres:// or postgresql:// URL, or else a
// path to a SQLite file (created if missing). It runs no DDL: call
// migrate. close releases it all.
func openStorage(ctx context.Context, url string, log *slog.Logger) (*storage, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return openPostgres(ctx, url, log)
	}
	return openSQLite(ctx, url, log)
}

func openPostgres(ctx context.Context, url string, log *slog.Logger) (*storage, error) {
	pool, err := pgdb.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	is, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: "idem", Logger: log})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &storage{
		payments: payments.New(pgdb.New(pool), log),
		idem:     is,
		tx:       api.TxOf(pgdb.Tx),
		close:    func() { is.Close(); pool.Close() },
	}, nil
}

func openSQLite(ctx context.Context, path string, log *slog.Logger) (*storage, error) {
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("payments: create SQLite file %s: %w", path, err)
	}
	db, err := sqlitestore.OpenDB(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("payments: open SQLite file %s: %w", path, err)
	}
	is, err := sqlitestore.New(db, &sqlitestore.Config{Logger: log})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &storage{
		payments: payments.New(sqlitedb.New(db, is), log),
		idem:     is,
		tx:       api.TxOf(sqlitedb.Tx),
		close:    func() { is.Close(); db.Close() },
	}, nil
}

// migrate applies the idempotency store's schema, then payd's, each
// migration once, safely from several processes at a time.
func (s *storage) migrate(ctx context.Context) error {
	if err := s.idem.Migrate(ctx); err != nil {
		return fmt.Errorf("payments: migrate: %w", err)
	}
	return s.payments.Migrate(ctx)
}

// createPrivate creates the SQLite file at path, readable by its owner
// alone, if it is a plain path that does not exist yet: it holds every
// merchant's payments and key hashes, and SQLite makes its journal files
// with the database's mode (TestDatabaseFileIsPrivate). A file that
// exists keeps its mode.
func createPrivate(path string) error {
	if strings.HasPrefix(path, "file:") || strings.Contains(path, "?") || path == ":memory:" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}
