package idem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/idemhq/idem/observe"
	"github.com/idemhq/idem/store"
)

// maxTxAttempts bounds how often RunTx reruns a transaction that lost a race
// (TxStore.Conflict) before it returns the error.
const maxTxAttempts = 5

// RunTx is Run with fn's writes and the outcome in one transaction of the
// engine's store: fn gets the transaction, and the outcome commits with
// whatever fn wrote there, or neither does. Effects inside that database
// then happen exactly once, with no window between effect and record.
//
// Concurrent callers of the key wait on the claim, then replay the outcome.
// A final error from fn is recorded without fn's writes; a transient one
// (RunOptions.Retryable, the database failing under fn as the store's
// Transient says, or the caller's context done) rolls everything back. A transaction that loses a race (a serialization failure or
// deadlock, as the store's Conflict says) is rolled back and rerun, up to
// five times, and never reported as fn's failure unless the attempts run
// out. fn must not commit or roll back the transaction itself.
//
// The engine's store must be a TxStore[Tx], such as the PostgreSQL store
// for pgx.Tx; otherwise RunTx returns an error without running fn.
func RunTx[Tx any](ctx context.Context, e *Engine, key string, fn func(ctx context.Context, tx Tx) ([]byte, error), opts *RunOptions) (Result[[]byte], error) {
	store, ok := e.store.(store.TxStore[Tx])
	if !ok {
		var tx Tx
		return result{}, fmt.Errorf("idem: RunTx: the engine's store %T cannot run fn in a %T transaction", e.store, tx)
	}
	c := call{tx: &txCall[Tx]{store: store, fn: fn}}
	if err := e.prepare(&c, key, opts); err != nil {
		return result{}, err
	}
	return e.run(ctx, &c)
}

// txRunner runs a RunTx call once it leads its flight.
type txRunner interface {
	execute(ctx context.Context, e *Engine, c call) (res result, err error, shared bool)
}

type txCall[Tx any] struct {
	store store.TxStore[Tx]
	fn    func(context.Context, Tx) ([]byte, error)
}

// errConflict marks an attempt that lost a race and should run again.
var errConflict = errors.New("idem: transaction conflict")

func (t *txCall[Tx]) execute(ctx context.Context, e *Engine, cv call) (result, error, bool) {
	c := &cv
	for attempt := 1; ; {
		wait := time.Duration(0)
		if !c.opts.FailFast {
			wait = max(c.waitBudget(), 0)
		}
		tx, cr, err := t.store.BeginClaim(ctx, e.claimParams(c), wait)
		if err != nil {
			c.owner = ""
			return result{}, e.storeFailed(ctx, "claim", c.key, err), false
		}
		if cr.Status == store.ClaimAcquired {
			c.owner = ""
		}
		switch cr.Status {
		case store.ClaimAcquired:
			res, err, shared := t.hold(ctx, e, c, tx, cr.Lease)
			if !errors.Is(err, errConflict) {
				return res, err, shared
			}
			if attempt == maxTxAttempts {
				return result{}, fmt.Errorf("idem: transaction lost a race %d times; nothing was recorded: %w", attempt, err), false
			}
			attempt++
			if err := sleepCtx(ctx, conflictBackoff(attempt)); err != nil {
				return result{}, err, false
			}
		case store.ClaimCompleted:
			return e.replay(ctx, c.key, cr.Outcome)
		case store.ClaimMismatch:
			e.observe(ctx, observe.Event{Kind: observe.Mismatch, Key: c.key})
			return result{}, ErrMismatch, true
		case store.ClaimInFlight:
			if err := e.wait(ctx, c, cr); err != nil {
				return result{}, err, false
			}
		default:
			return result{}, e.storeFailed(ctx, "claim", c.key, fmt.Errorf("invalid claim status %d", cr.Status)), false
		}
	}
}

// hold runs fn in tx, which holds the claim l, and commits the outcome with
// fn's writes.
func (t *txCall[Tx]) hold(ctx context.Context, e *Engine, c *call, tx Tx, l store.Lease) (result, error, bool) {
	detached := context.WithoutCancel(ctx)
	returned := false
	defer func() {
		if !returned {
			// fn panicked or called runtime.Goexit: undo everything.
			t.rollback(e, detached, tx, l, errDidNotReturn)
		}
	}()
	start := time.Now()
	value, fnErr := t.fn(context.WithValue(ctx, leaseKey{}, l), tx)
	returned = true
	took := time.Since(start)

	if fnErr != nil && t.store.Conflict(fnErr) {
		t.rollback(e, detached, tx, l, fnErr)
		return result{}, fmt.Errorf("%w: %w", errConflict, fnErr), false
	}
	if fnErr != nil && (ctx.Err() != nil || t.store.Transient(fnErr) || c.opts.Retryable != nil && c.opts.Retryable(fnErr)) {
		t.rollback(e, detached, tx, l, fnErr)
		e.unencodable(detached, l, took, fnErr)
		return result{}, fnErr, false
	}
	o := outcome{value: value}
	if fnErr != nil {
		o = e.errorOutcome(fnErr)
	}
	bctx, cancel := e.bounded(detached)
	err := t.store.Commit(bctx, tx, l, o.encode(), fnErr != nil)
	cancel()
	if err != nil {
		if t.store.Conflict(err) {
			e.observe(ctx, observe.Event{Kind: observe.Released, Key: l.Key, Fence: l.Fence, Err: err})
			return result{}, fmt.Errorf("%w: %w", errConflict, err), false
		}
		return result{}, e.notRecorded(ctx, "commit", l, took, err), false
	}
	e.observe(ctx, observe.Event{Kind: observe.Executed, Key: l.Key, Fence: l.Fence, Duration: took, Err: fnErr})
	return result{Value: value}, fnErr, true
}

func (t *txCall[Tx]) rollback(e *Engine, detached context.Context, tx Tx, l store.Lease, cause error) {
	ctx, cancel := e.bounded(detached)
	err := t.store.Rollback(ctx, tx)
	cancel()
	e.observe(detached, observe.Event{Kind: observe.Released, Key: l.Key, Fence: l.Fence, Err: cause})
	if err != nil {
		e.observe(detached, observe.Event{Kind: observe.StoreError, Key: l.Key, Fence: l.Fence, Err: err})
		e.cfg.Logger.LogAttrs(detached, slog.LevelWarn, "idem: rollback failed; the database ends the transaction when its connection closes",
			slog.String("key", l.Key), slog.Any("error", err))
	}
}

// conflictBackoff is the pause before attempt n (2 or more) of a transaction
// that lost a race: exponential from 5ms, with full jitter.
func conflictBackoff(n int) time.Duration {
	return rand.N(5 * time.Millisecond << (n - 2))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
