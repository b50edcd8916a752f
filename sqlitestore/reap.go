package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"
)

// reapEvery runs reap every interval until ctx ends.
func (s *Store) reapEvery(ctx context.Context, interval time.Duration) {
	defer close(s.reaped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.Reap(ctx)
		switch {
		case ctx.Err() != nil, errors.Is(err, errNotMigrated):
		case err != nil:
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "sqlitestore: deleting expired records failed; they stay until the next round",
				slog.Int64("deleted", n), slog.Any("error", err))
		case n > 0:
			s.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "sqlitestore: deleted expired records", slog.Int64("deleted", n))
		}
	}
}

// Reap deletes every record expired by now, as the background reaper does
// every ReapInterval; call it yourself with the reaper off (a negative
// ReapInterval). It sweeps the table in key order, ReapBatch records at a
// time: it finds the end of the next batch without the write lock, then
// deletes the batch's expired records as one write, so claims interleave
// with a long sweep and no write holds the lock for more than one batch.
// It returns how many records it deleted (TestReapDeletesExpiredInBatches).
func (s *Store) Reap(ctx context.Context) (int64, error) {
	st, err := s.ready(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	after := ""
	for {
		var upto sql.NullString
		if err := st.reapNext.QueryRowContext(ctx, after, s.cfg.ReapBatch).Scan(&upto); err != nil {
			return total, failed("reap", err)
		}
		if !upto.Valid {
			return total, nil
		}
		var n int64
		err := s.write(ctx, func(ctx context.Context) error {
			res, err := st.reap.ExecContext(ctx, after, upto.String, now())
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil {
			return total, failed("reap", err)
		}
		after = upto.String
	}
}
