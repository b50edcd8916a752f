package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"modernc.org/sqlite"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/store"
)

// minLockWait is the least BeginClaim waits for the write lock, even with
// maxWait zero. The lock is database-wide: every write to any key takes it
// briefly, and a fail-fast caller should not be turned away by those.
const minLockWait = 100 * time.Millisecond

// savepoint marks the start of fn's writes in a BeginClaim transaction, so
// that Commit can undo them and keep the claim.
const savepoint = "idem_fn"

// activeTx is the BeginClaim transaction that holds this process's write
// lock. There is at most one per Store.
type activeTx struct {
	tx     *sql.Tx
	st     *statements
	cancel context.CancelFunc // the transaction's context
}

// BeginClaim implements store.TxStore. It begins a write transaction (the
// database's one write lock, held until Commit or Rollback), claims p.Key
// inside it and takes a savepoint for fn's writes.
//
// A completed record, a committed live lease or a mismatch is read first,
// without the lock, and returned at once. Otherwise BeginClaim waits for
// the write lock up to maxWait (at least 100ms, since writes to other keys
// take it too): a concurrent claim of the same key in an uncommitted
// transaction holds it, and once that transaction ends this claim sees its
// outcome. If the lock is not free in time, it reports ClaimInFlight.
//
// While the transaction is open, every other write to the database, by
// this process or another, waits for it: keep fn short, and write only
// through tx (a write through the *sql.DB would wait for the lock tx holds).
// RunTx calls do not nest.
func (s *Store) BeginClaim(ctx context.Context, p store.ClaimParams, maxWait time.Duration) (*sql.Tx, store.ClaimResult, error) {
	st, err := s.ready(ctx)
	if err != nil {
		return nil, store.ClaimResult{}, err
	}
	cr, claimable, takeover, r, found, err := inspect(ctx, st, p)
	if err != nil || !claimable {
		return nil, cr, err
	}
	deadline := time.Now().Add(max(maxWait, minLockWait))
	a, err := s.begin(ctx, st, deadline)
	if err == nil {
		cr, err = s.claimIn(ctx, a, p, r, found, takeover, deadline)
		if err == nil && cr.Status == store.ClaimAcquired {
			return a.tx, cr, nil
		}
		a.tx.Rollback()
		s.end(a)
	}
	switch {
	case err == nil:
		return nil, cr, nil
	case ctx.Err() != nil:
		return nil, store.ClaimResult{}, failed("claim", ctx.Err())
	case busy(err):
		return nil, store.ClaimResult{Status: store.ClaimInFlight, Lease: store.Lease{Key: p.Key, Fence: r.fence}}, nil
	}
	return nil, store.ClaimResult{}, failed("claim", err)
}

// begin takes this process's write lock and begins a transaction, waiting
// until deadline at most for either, and records it as the active one.
func (s *Store) begin(ctx context.Context, st *statements, deadline time.Time) (*activeTx, error) {
	if err := s.lockUntil(ctx, deadline); err != nil {
		return nil, err
	}
	// The transaction's context is the caller's without its cancellation:
	// once the claim is taken the engine decides whether the transaction
	// commits, as database/sql would roll it back the moment the caller's
	// context ended, even after fn succeeded. Until BEGIN returns, the
	// context is also cancelled with ctx or at the deadline, which bounds a
	// BEGIN IMMEDIATE's wait for another process's lock.
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopCtx := context.AfterFunc(ctx, cancel)
	timer := time.AfterFunc(time.Until(deadline), cancel)
	tx, err := s.db.BeginTx(tctx, nil)
	armedCtx, armedTimer := stopCtx(), timer.Stop()
	if err == nil && (!armedCtx || !armedTimer) {
		// Cancelled just as BEGIN returned: database/sql rolls tx back.
		tx.Rollback()
		err = errLockWait
	}
	if err != nil {
		cancel()
		s.unlock()
		if tctx.Err() != nil && ctx.Err() == nil {
			err = errLockWait
		}
		return nil, err
	}
	a := &activeTx{tx: tx, st: st, cancel: cancel}
	s.active.Store(a)
	return a, nil
}

// claimIn claims p in a's transaction, given r as read before it began.
func (s *Store) claimIn(ctx context.Context, a *activeTx, p store.ClaimParams, r record, found, takeover bool, deadline time.Time) (store.ClaimResult, error) {
	bind := func(stmt *sql.Stmt) *sql.Stmt { return a.tx.StmtContext(ctx, stmt) }
	// The first statement writes, so from here on the transaction holds the
	// write lock whatever its begin mode (a db opened without
	// _txlock=immediate begins deferred). Until it has the lock it may wait
	// for another process's: up to the deadline.
	wctx, cancel := context.WithDeadline(ctx, deadline)
	ok, err := take(wctx, a.st, bind, p, r, found, now())
	cancel()
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			return store.ClaimResult{}, errLockWait
		}
		return store.ClaimResult{}, err
	}
	if !ok {
		// The record changed between the first read and the lock. Under the
		// lock it cannot change again.
		r, found, err = read(ctx, bind(a.st.read), p)
		if err != nil {
			return store.ClaimResult{}, err
		}
		var cr store.ClaimResult
		var claimable bool
		if cr, claimable, takeover = decide(p, r, found, now()); !claimable {
			return cr, nil
		}
		if ok, err = take(ctx, a.st, bind, p, r, found, now()); err != nil {
			return store.ClaimResult{}, err
		}
		if !ok {
			return store.ClaimResult{}, errors.New("the record changed while the write lock was held")
		}
	}
	if _, err := bind(a.st.savepoint).ExecContext(ctx); err != nil {
		return store.ClaimResult{}, err
	}
	return acquired(p, r, found, takeover), nil
}

// end releases what begin took for a, once.
func (s *Store) end(a *activeTx) {
	if s.active.CompareAndSwap(a, nil) {
		a.cancel()
		s.unlock()
	}
}

// Commit implements store.TxStore. It always ends tx: on an error nothing
// of tx is committed.
func (s *Store) Commit(ctx context.Context, tx *sql.Tx, l store.Lease, outcome []byte, discardWrites bool) error {
	a := s.active.Load()
	if a == nil || a.tx != tx {
		return errors.New("sqlitestore: Commit: tx is not the open transaction of a BeginClaim")
	}
	defer s.end(a)
	if discardWrites {
		if _, err := tx.StmtContext(ctx, a.st.rollbackTo).ExecContext(ctx); err != nil {
			tx.Rollback()
			return failed("commit", err)
		}
	}
	res, err := tx.StmtContext(ctx, a.st.complete).ExecContext(ctx, l.Key, l.Owner, l.Fence, now(), outcome)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		tx.Rollback()
		return failed("commit", err)
	}
	if n != 1 {
		tx.Rollback()
		return idem.ErrLeaseLost
	}
	if err := tx.Commit(); err != nil {
		return failed("commit", err)
	}
	s.waiters.wake(l.Key)
	return nil
}

// Rollback implements store.TxStore.
func (s *Store) Rollback(_ context.Context, tx *sql.Tx) error {
	err := tx.Rollback()
	if a := s.active.Load(); a != nil && a.tx == tx {
		s.end(a)
	}
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return failed("rollback", err)
}

// Conflict implements store.TxStore: SQLITE_BUSY and SQLITE_LOCKED, with
// their extended codes, mean the transaction met another writer and may
// succeed if run again.
func (s *Store) Conflict(err error) bool { return busy(err) }

// Transient implements store.TxStore: SQLite failing under fn, not fn's
// answer: an I/O error, a full disk, no memory, an interrupted statement,
// a database file that cannot be opened or is damaged (TestTransient).
func (s *Store) Transient(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && transientCode(se.Code())
}
