package pgstore

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/batch"
)

// Claims and completions that arrive while BatchSlots statements of their
// kind are in flight go together in the next one (internal/batch): a
// statement over arrays, one transaction and one commit for all of them.
// A call that finds a slot free goes at once, in the single-key
// statement, so a lone caller pays nothing for this.
//
// A batch runs its calls in key order, so that two batches touching the
// same keys lock them in the same order. A deadlock or serialization
// failure retries the whole batch; any other error the server reports
// fails the batch, which then runs each call on its own, so one bad call
// fails only itself.

// completion is one call of Complete.
type completion struct {
	lease   idem.Lease
	outcome []byte
}

func (s *Store) newBatchers() {
	s.claims = batch.New(s.cfg.BatchSlots, s.cfg.BatchMax, s.claimBatch)
	s.completions = batch.New(s.cfg.BatchSlots, s.cfg.BatchMax, s.completeBatch)
}

// claimBatch runs ps's claims and returns their results in order.
func (s *Store) claimBatch(ctx context.Context, ps []idem.ClaimParams) []batch.Result[idem.ClaimResult] {
	return inKeyOrder(ctx, s, "claim", ps, func(p idem.ClaimParams) string { return p.Key }, s.claimOne, s.claimMany)
}

func (s *Store) claimOne(ctx context.Context, p idem.ClaimParams) (cr idem.ClaimResult, err error) {
	err = s.retry(ctx, func() (err error) {
		cr, err = s.claimIn(ctx, s.pool, p)
		return err
	})
	if err != nil {
		return idem.ClaimResult{}, s.failed("claim", err)
	}
	return cr, nil
}

// claimMany runs the claims of ps, sorted by key, in one statement. It
// fails as a whole or not at all.
func (s *Store) claimMany(ctx context.Context, ps []idem.ClaimParams) ([]batch.Result[idem.ClaimResult], error) {
	keys, owners, fingerprints := make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps))
	leases, retentions := make([]int64, len(ps)), make([]int64, len(ps))
	for i, p := range ps {
		keys[i], owners[i], fingerprints[i] = p.Key, p.Owner, p.Fingerprint
		leases[i], retentions[i] = p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds()
	}
	var out []batch.Result[idem.ClaimResult]
	err := s.retry(ctx, func() error {
		out = make([]batch.Result[idem.ClaimResult], len(ps))
		for i, p := range ps {
			out[i].Val = unseen(p)
		}
		return s.queryBatch(ctx, s.sql.claimMany, func(rows pgx.Rows) error {
			var (
				i int
				r claimRow
			)
			if err := rows.Scan(append([]any{&i}, r.fields()...)...); err != nil {
				return err
			}
			out[i-1].Val, out[i-1].Err = r.result(ps[i-1])
			return nil
		}, keys, owners, fingerprints, leases, retentions)
	})
	return out, err
}

// completeBatch runs cs's completions and returns their results in order:
// ErrLeaseLost for each whose fence was not current.
func (s *Store) completeBatch(ctx context.Context, cs []completion) []batch.Result[struct{}] {
	return inKeyOrder(ctx, s, "complete", cs, func(c completion) string { return c.lease.Key }, s.completeOne, s.completeMany)
}

func (s *Store) completeOne(ctx context.Context, c completion) (struct{}, error) {
	return struct{}{}, s.end(ctx, "complete", c.lease, s.sql.complete, c.outcome)
}

// completeMany runs the completions of cs, sorted by key, in one
// statement, then notifies the waiters of those that someone waits on.
func (s *Store) completeMany(ctx context.Context, cs []completion) ([]batch.Result[struct{}], error) {
	keys, owners := make([]string, len(cs)), make([]string, len(cs))
	fences, outcomes := make([]int64, len(cs)), make([][]byte, len(cs))
	for i, c := range cs {
		keys[i], owners[i], fences[i], outcomes[i] = c.lease.Key, c.lease.Owner, c.lease.Fence, c.outcome
	}
	var (
		out    []batch.Result[struct{}]
		waited []string
	)
	err := s.retry(ctx, func() error {
		out, waited = make([]batch.Result[struct{}], len(cs)), nil
		for i := range out {
			out[i].Err = idem.ErrLeaseLost
		}
		return s.queryBatch(ctx, s.sql.completeMany, func(rows pgx.Rows) error {
			var (
				i     int
				waits bool
			)
			if err := rows.Scan(&i, &waits); err != nil {
				return err
			}
			out[i-1].Err = nil
			if waits {
				waited = append(waited, keys[i-1])
			}
			return nil
		}, keys, owners, fences, outcomes)
	})
	if err == nil && len(waited) > 0 {
		if _, err := s.pool.Exec(ctx, s.sql.notifyMany, s.channel, waited); err != nil {
			s.cfg.Logger.Warn("pgstore: notifying waiters failed; they will see the records at their next poll",
				slog.String("op", "complete"), slog.Int("records", len(waited)), slog.Any("error", err))
		}
	}
	return out, err
}

// batchLockTimeout cuts short a batch's wait for a row lock, at 100ms. A
// claim or a completion can wait on a transaction that holds its record
// (RunTx's, for as long as its fn runs); in a batch, every other call
// would wait with it. Locks taken by other batches are held for a commit,
// far less than this. A batch that times out runs again call by call,
// where each call waits for its own record only.
//
// The batch statements open with it: it sets lock_timeout for their
// transaction while the executor evaluates unnest's first argument, which
// it does before the scan yields the first row, so before any claim or
// update can wait. Setting it in a statement of its own would cost a
// batch about a tenth of its throughput.
const batchLockTimeout = `CASE WHEN set_config('lock_timeout', '100ms', true) IS NOT NULL THEN `

// queryBatch runs sql, a statement over a batch of calls, and hands each
// row it returns to scan.
func (s *Store) queryBatch(ctx context.Context, sql string, scan func(pgx.Rows) error, args ...any) error {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// inKeyOrder runs a batch of calls: a lone call with one, under its
// caller's context, which Claim or Complete bounded by OpTimeout; several
// sorted by key with many, under OpTimeout of their own, answered in the
// order they came. When many fails with an error the server reported,
// each call runs on its own, all at once; any other error fails them all.
func inKeyOrder[In, Out any](
	ctx context.Context, s *Store, op string, ins []In, key func(In) string,
	one func(context.Context, In) (Out, error),
	many func(context.Context, []In) ([]batch.Result[Out], error),
) []batch.Result[Out] {
	out := make([]batch.Result[Out], len(ins))
	if len(ins) == 1 {
		out[0].Val, out[0].Err = one(ctx, ins[0])
		return out
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	order := make([]int, len(ins))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(key(ins[a]), key(ins[b])) })
	sorted := make([]In, len(ins))
	for i, o := range order {
		sorted[i] = ins[o]
	}
	results, err := many(ctx, sorted)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		var wg sync.WaitGroup
		for i, in := range ins {
			wg.Go(func() { out[i].Val, out[i].Err = one(ctx, in) })
		}
		wg.Wait()
	case err != nil:
		err = s.failed(op, err)
		for i := range out {
			out[i].Err = err
		}
	default:
		for i, o := range order {
			out[o] = results[i]
		}
	}
	return out
}
