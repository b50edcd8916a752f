package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem/store"
)

// The transactional mode: the claim is made inside the caller's future
// transaction, so its row lock holds the key until the transaction ends.
// Concurrent claims of the key wait on that lock, up to their lock_timeout,
// then see the committed outcome. A SAVEPOINT taken after the claim lets a
// final error be recorded without fn's writes.

const savepoint = "idem_fn"

// BeginClaim implements store.TxStore: BEGIN, the lock timeout, the claim
// and a savepoint in one round trip.
func (s *Store) BeginClaim(ctx context.Context, p store.ClaimParams, maxWait time.Duration) (pgx.Tx, store.ClaimResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, store.ClaimResult{}, s.failed("claim", err)
	}
	// lock_timeout 0 means no limit: don't wait means wait 1ms.
	lockTimeout := fmt.Sprintf("%dms", max(maxWait.Milliseconds(), 1))
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	// The claim waits for the key's lock lockTimeout at most; fn's own
	// statements then wait as the connection's lock_timeout says, not as
	// the claim's (TestClaimLockTimeoutStaysInTheClaim).
	b.Queue(`SELECT set_config('idem.caller_lock_timeout', current_setting('lock_timeout'), true), set_config('lock_timeout', $1, true)`, lockTimeout)
	claim := b.Queue(s.sql.claim, p.Key, p.Owner, p.Fingerprint, p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds())
	b.Queue(`SELECT set_config('lock_timeout', current_setting('idem.caller_lock_timeout'), true)`)
	b.Queue(`SAVEPOINT ` + savepoint)
	var cr store.ClaimResult
	claim.QueryRow(func(row pgx.Row) error {
		var err error
		cr, err = s.claimIn(ctx, rowQuerier{row}, s.sql.claim, p)
		return err
	})
	br := conn.SendBatch(ctx, b)
	tx := &claimTx{tx: br.Tx(), conn: conn}
	err = br.Close()
	switch {
	case lockTimedOut(err):
		tx.end(context.WithoutCancel(ctx))
		return nil, store.ClaimResult{Status: store.ClaimInFlight, Lease: store.Lease{Key: p.Key}}, nil
	case err != nil:
		tx.end(context.WithoutCancel(ctx))
		return nil, store.ClaimResult{}, s.failed("claim", err)
	case cr.Status != store.ClaimAcquired:
		if err := tx.end(ctx); err != nil {
			return nil, store.ClaimResult{}, s.failed("claim", err)
		}
		return nil, cr, nil
	}
	return tx, cr, nil
}

// rowQuerier hands claimIn a row the batch has already read.
type rowQuerier struct{ row pgx.Row }

func (q rowQuerier) QueryRow(context.Context, string, ...any) pgx.Row { return q.row }

// Commit implements store.TxStore: the outcome, checked against the claim,
// and the COMMIT go in one round trip. If the claim is not the
// transaction's any more, the check fails and the COMMIT rolls back.
func (s *Store) Commit(ctx context.Context, tx pgx.Tx, l store.Lease, outcome []byte, discardWrites bool) error {
	t, ok := tx.(*claimTx)
	if !ok {
		return fmt.Errorf("pgstore: commit: %T is not a transaction BeginClaim began", tx)
	}
	if t.ended {
		return fmt.Errorf("pgstore: commit: %w (did fn end it?)", pgx.ErrTxClosed)
	}
	if discardWrites {
		// On its own, in the simple protocol: fn's error may have aborted
		// the transaction, where pgx could not prepare the batch's
		// statements, as it does first on a connection that has not run
		// them yet (TestAbortedTransactionErrorIsRecorded).
		if _, err := t.conn.Conn().PgConn().Exec(ctx, `ROLLBACK TO SAVEPOINT `+savepoint).ReadAll(); err != nil {
			t.end(context.WithoutCancel(ctx))
			return s.failed("commit", err)
		}
	}
	b := &pgx.Batch{}
	b.Queue(s.sql.completeInTx, l.Key, l.Owner, l.Fence, outcome, s.channel)
	commit := b.Queue(`COMMIT`)
	var tag pgconn.CommandTag
	commit.Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	err := t.conn.SendBatch(ctx, b).Close()
	t.ended = true
	t.conn.Release() // destroyed instead if the batch left it in a transaction
	switch {
	case err != nil:
		return s.failed("commit", err)
	case tag.String() != "COMMIT":
		return s.failed("commit", pgx.ErrTxCommitRollback)
	}
	return nil
}

// Rollback implements store.TxStore.
func (s *Store) Rollback(ctx context.Context, tx pgx.Tx) error {
	t, ok := tx.(*claimTx)
	if !ok {
		return fmt.Errorf("pgstore: rollback: %T is not a transaction BeginClaim began", tx)
	}
	if err := t.end(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return s.failed("rollback", err)
	}
	return nil
}

// claimTx is the transaction BeginClaim hands to fn: pgx's Tx, on a
// connection the store took from the pool for it, so that Commit can send
// the outcome and the COMMIT together and give the connection back (pgx's
// own Commit would take a round trip of its own). fn may use it as any
// pgx.Tx but must not end it: Commit and Rollback return an error, and once
// RunTx has ended it every method returns pgx.ErrTxClosed, but for Conn and
// LargeObjects, which reach the connection itself and are for fn's own
// use while it runs. The pgx.Tx inside is left behind, open in its own
// eyes, when Commit commits: only claimTx ever reaches it.
type claimTx struct {
	tx    pgx.Tx
	conn  *pgxpool.Conn
	ended bool
}

var errEndedByRunTx = errors.New("pgstore: RunTx ends this transaction when fn returns; fn must not commit or roll it back (return an error to record it without fn's writes)")

// end rolls the transaction back and gives the connection back.
func (t *claimTx) end(ctx context.Context) error {
	if t.ended {
		return pgx.ErrTxClosed
	}
	t.ended = true
	err := t.tx.Rollback(ctx)
	t.conn.Release()
	return err
}

func (t *claimTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if t.ended {
		return nil, pgx.ErrTxClosed
	}
	return t.tx.Begin(ctx)
}

func (t *claimTx) Commit(context.Context) error   { return errEndedByRunTx }
func (t *claimTx) Rollback(context.Context) error { return errEndedByRunTx }

func (t *claimTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error) {
	if t.ended {
		return 0, pgx.ErrTxClosed
	}
	return t.tx.CopyFrom(ctx, table, columns, rows)
}

func (t *claimTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.ended {
		return closedBatch{}
	}
	return t.tx.SendBatch(ctx, b)
}

func (t *claimTx) LargeObjects() pgx.LargeObjects { return t.tx.LargeObjects() }

func (t *claimTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if t.ended {
		return nil, pgx.ErrTxClosed
	}
	return t.tx.Prepare(ctx, name, sql)
}

func (t *claimTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.ended {
		return pgconn.CommandTag{}, pgx.ErrTxClosed
	}
	return t.tx.Exec(ctx, sql, args...)
}

func (t *claimTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.ended {
		return nil, pgx.ErrTxClosed
	}
	return t.tx.Query(ctx, sql, args...)
}

func (t *claimTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.ended {
		return closedRow{}
	}
	return t.tx.QueryRow(ctx, sql, args...)
}

func (t *claimTx) Conn() *pgx.Conn { return t.tx.Conn() }

// closedRow and closedBatch answer for a transaction that has ended.
type closedRow struct{}

func (closedRow) Scan(...any) error { return pgx.ErrTxClosed }

type closedBatch struct{}

func (closedBatch) Tx() pgx.Tx                       { return nil }
func (closedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, pgx.ErrTxClosed }
func (closedBatch) Query() (pgx.Rows, error)         { return nil, pgx.ErrTxClosed }
func (closedBatch) QueryRow() pgx.Row                { return closedRow{} }
func (closedBatch) Close() error                     { return pgx.ErrTxClosed }

func lockTimedOut(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}
