package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idemhq/idem"
)

// The transactional mode: the claim is made inside the caller's future
// transaction, so its row lock holds the key until the transaction ends.
// Concurrent claims of the key wait on that lock, up to their lock_timeout,
// then see the committed outcome. A SAVEPOINT taken after the claim lets a
// final error be recorded without fn's writes.

const savepoint = "idem_fn"

// BeginClaim implements idem.TxStore: BEGIN, then the lock timeout, the
// claim and a savepoint in one round trip.
func (s *Store) BeginClaim(ctx context.Context, p idem.ClaimParams, maxWait time.Duration) (pgx.Tx, idem.ClaimResult, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, idem.ClaimResult{}, s.failed("claim", err)
	}
	// lock_timeout 0 means no limit: don't wait means wait 1ms.
	lockTimeout := fmt.Sprintf("%dms", max(maxWait.Milliseconds(), 1))
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('lock_timeout', $1, true)`, lockTimeout)
	claim := b.Queue(s.sql.claim, p.Key, p.Owner, p.Fingerprint, p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds())
	b.Queue(`SAVEPOINT ` + savepoint)
	var cr idem.ClaimResult
	claim.QueryRow(func(row pgx.Row) error {
		var err error
		cr, err = s.claimIn(ctx, rowQuerier{row}, p)
		return err
	})
	err = tx.SendBatch(ctx, b).Close()
	switch {
	case lockTimedOut(err):
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, idem.ClaimResult{Status: idem.ClaimInFlight, Lease: idem.Lease{Key: p.Key}}, nil
	case err != nil:
		tx.Rollback(context.WithoutCancel(ctx))
		return nil, idem.ClaimResult{}, s.failed("claim", err)
	case cr.Status != idem.ClaimAcquired:
		if err := tx.Rollback(ctx); err != nil {
			return nil, idem.ClaimResult{}, s.failed("claim", err)
		}
		return nil, cr, nil
	}
	return tx, cr, nil
}

// rowQuerier hands claimIn a row the batch has already read.
type rowQuerier struct{ row pgx.Row }

func (q rowQuerier) QueryRow(context.Context, string, ...any) pgx.Row { return q.row }

// Commit implements idem.TxStore. It ends tx, rolling it back if anything
// before the COMMIT fails.
func (s *Store) Commit(ctx context.Context, tx pgx.Tx, l idem.Lease, outcome []byte, discardWrites bool) error {
	if err := s.recordIn(ctx, tx, l, outcome, discardWrites); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return s.failed("commit", err)
	}
	return nil
}

// recordIn writes the outcome into tx, first undoing fn's writes if asked.
// No retry here: a lost race aborts the transaction, and the engine reruns
// all of it.
func (s *Store) recordIn(ctx context.Context, tx pgx.Tx, l idem.Lease, outcome []byte, discardWrites bool) error {
	if discardWrites {
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT `+savepoint); err != nil {
			return s.failed("commit", err)
		}
	}
	updated, err := endFence(ctx, tx, s.sql.complete, l.Key, l.Owner, l.Fence, outcome, s.channel)
	if err != nil {
		return s.failed("commit", err)
	}
	if updated != 1 {
		return fmt.Errorf("pgstore: commit: the claim vanished from its own transaction: %w", idem.ErrLeaseLost)
	}
	return nil
}

// Rollback implements idem.TxStore.
func (s *Store) Rollback(ctx context.Context, tx pgx.Tx) error {
	if err := tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return s.failed("rollback", err)
	}
	return nil
}

func lockTimedOut(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}
