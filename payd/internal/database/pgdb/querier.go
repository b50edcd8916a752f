package pgdb

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idemhq/idem/payd/internal/database"
)

// querier runs statements on a pgx pool or transaction.
type querier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
}

func (p querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (p querier) QueryRow(ctx context.Context, query string, args ...any) database.Row {
	return row{p.q.QueryRow(ctx, query, args...)}
}

func (p querier) Query(ctx context.Context, query string, args ...any) (database.Rows, error) {
	r, err := p.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// row translates pgx's "no rows" into database.ErrNoRows.
type row struct{ row pgx.Row }

func (r row) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return database.ErrNoRows
	}
	return err
}
