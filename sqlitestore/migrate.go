package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded schema change. Version n is the n-th file,
// named NNNN_what.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded migrations in order. A malformed set is a
// build mistake, caught by the package's tests.
var migrations = mustLoadMigrations()

func mustLoadMigrations() []migration {
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for i, e := range entries { // ReadDir sorts by name
		prefix, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v != i+1 {
			panic(fmt.Sprintf("sqlitestore: migration %s: want version %d as its NNNN_ prefix", e.Name(), i+1))
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return ms
}

// Migrate brings the database's schema to the version this package needs,
// applying the embedded migrations it lacks in one transaction, and
// prepares the Store's statements. It is safe to call on every start, and
// from several processes at once: they take the write lock in turn, and
// each migration is applied once. Nothing else runs DDL.
//
// The schema is two tables, idem_records and idem_migrations, and one
// index; the caller's own tables may share the file.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := checkWAL(ctx, s.db); err != nil {
		return err
	}
	// Unlike other writes, a migration is bounded by ctx alone: it may take
	// long on a large database, and so may another process's.
	for attempt := 0; ; attempt++ {
		select {
		case s.writer <- struct{}{}:
		case <-ctx.Done():
			return failed("migrate", ctx.Err())
		}
		err := migrate(ctx, s.db)
		s.unlock()
		if err == nil {
			break
		}
		if !busy(err) || ctx.Err() != nil {
			return failed("migrate", err)
		}
		if err := sleepCtx(ctx, backoff(attempt)); err != nil {
			return failed("migrate", err)
		}
	}
	_, err := s.ready(ctx)
	return err
}

// migrate applies the missing migrations on a dedicated connection, in a
// BEGIN IMMEDIATE transaction, so that concurrent migrators take turns and
// each sees the others' work.
func migrate(ctx context.Context, db *sql.DB) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			// Never return a connection to the pool inside a transaction.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if _, err := conn.ExecContext(ctx, migrationsTable); err != nil {
		return err
	}
	var have int
	if err := conn.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM idem_migrations").Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("the database is at schema version %d, newer than this package's %d", have, len(migrations))
	}
	for _, m := range migrations[have:] {
		if _, err := conn.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO idem_migrations (version, name, applied_at) VALUES (?, ?, ?)",
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			return err
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	committed = true
	return nil
}

// schemaVersion returns the highest migration applied, 0 for none.
func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var tables, v int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'idem_migrations'").Scan(&tables)
	if err == nil && tables == 1 {
		err = db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM idem_migrations").Scan(&v)
	}
	if err != nil {
		return 0, failed("read schema version", err)
	}
	return v, nil
}
