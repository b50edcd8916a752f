package sqlitedb

import (
	"context"
	"database/sql"
	"errors"

	"github.com/idemhq/idem/payd/internal/database"
)

// querier runs statements on a *sql.DB or *sql.Tx.
type querier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}
}

func (s querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s querier) QueryRow(ctx context.Context, query string, args ...any) database.Row {
	return row{s.q.QueryRowContext(ctx, query, args...)}
}

func (s querier) Query(ctx context.Context, query string, args ...any) (database.Rows, error) {
	r, err := s.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

// row translates database/sql's "no rows" into database.ErrNoRows.
type row struct{ row *sql.Row }

func (r row) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return database.ErrNoRows
	}
	return err
}

// rows is *sql.Rows with a Close that returns nothing, as database.Rows
// has it.
type rows struct{ *sql.Rows }

func (r rows) Close() { r.Rows.Close() }
