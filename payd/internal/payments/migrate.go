package payments

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/idemhq/idem/payd/internal/database"
)

//go:embed migrations
var migrations embed.FS

// Migrate applies payd's schema, each migration once, safely from several
// processes at a time. The idempotency store's schema is its own to
// apply: payd's commands migrate it first.
func (s *Store) Migrate(ctx context.Context) error {
	err := s.db.Migrate(ctx, func(ctx context.Context, tx database.Querier) error {
		return s.applyMigrations(ctx, tx, "")
	})
	if err != nil {
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
func (s *Store) applyMigrations(ctx context.Context, q database.Querier, until string) error {
	if _, err := q.Exec(ctx, `CREATE TABLE IF NOT EXISTS payd_migrations (name text PRIMARY KEY, applied_at bigint NOT NULL)`); err != nil {
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
		if err := q.QueryRow(ctx, s.dialect.sql(`SELECT count(*) FROM payd_migrations WHERE name = $1`), base).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := q.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("apply %s: %w", base, err)
		}
		if _, err := q.Exec(ctx, s.dialect.sql(`INSERT INTO payd_migrations (name, applied_at) VALUES ($1, {{now}})`), base); err != nil {
			return err
		}
	}
	return nil
}

// Ready reports whether the database answers and every migration is
// applied, saying which part is not.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.db.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	names, err := s.migrationNames()
	if err != nil {
		return err
	}
	const apply = "run payd migrate, or start payd once with --migrate"
	var n int
	switch err := s.db.QueryRow(ctx, `SELECT count(*) FROM payd_migrations`).Scan(&n); {
	case s.db.MissingTable(err):
		return fmt.Errorf("no migrations applied (%s)", apply)
	case err != nil:
		return fmt.Errorf("database unreachable: %w", err)
	case n < len(names):
		return fmt.Errorf("%d of %d migrations applied (%s)", n, len(names), apply)
	}
	return nil
}
