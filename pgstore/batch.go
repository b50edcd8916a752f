package pgstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/batch"
)

// Claims and completions go through batchers (internal/batch): at most
// BatchSlots statements of each kind at once. A call that finds a slot
// free goes at once, alone, in the single-key statement; calls that arrive
// while all are busy go together in the next one, a statement over arrays:
// one round trip and one commit for all of them.
//
// A statement that holds a slot must not wait long on a row lock, or every
// call queued behind the slot would wait with it: a record held by an open
// transaction (RunTx's, while its fn runs) would stall claims of every
// other key. So slot statements run with lockTimeout, and a call whose
// statement timed out on a lock gives the slot back and runs again on its
// caller's goroutine, outside the slots, in the plain statement that waits
// for its record as long as its context allows (errAlone). So does each
// call of a batch the server rejected for bad data, so that a bad call
// fails only itself, and of a batch its earliest caller's deadline cut
// short. Any other failure fails the whole batch. The price of the fixed
// timeout: a batch that meets a held record, or a commit slower than
// 100 ms, sends all its calls off alone, each a statement of its own.
// Tests: TestHeldRecordHoldsUpOnlyItsOwnClaims,
// TestLockedRecordHoldsUpOnlyItsOwnCompletion, TestBadCallFailsAlone,
// TestCallerGoneWhileWaiting; the batch statements keep the store's
// contract (TestConformanceArrays) and answer each call by its position
// (TestBatchAnswersEachCall, TestBatchClaimsOfOneKey,
// TestBatchCompletions).
//
// A batch runs its calls in key order, so two batches lock the keys they
// share in the same order. Each call finds its record by key, however
// small the table was when the plan was made: claims through idem_claim,
// completions through idem_complete (TestStatementsFindRecordsByKey).

// lockTimeout wraps expr, a statement's input, so that evaluating it sets
// lock_timeout for the rest of the transaction, to 100 ms: long enough for
// locks that other statements hold only until their commit. It is
// evaluated before the statement can wait for a row lock: the batch
// statements wrap the first argument of their unnest, which the executor
// evaluates before the scan yields its first row; a lone claim wraps the
// key idem_claim gets, and a lone completion the new outcome, which the
// executor works out before it locks the row. Table locks come earlier,
// at the statement's start, but only DDL holds those. Set in a statement
// of its own, it cost a batch a tenth of its throughput.
func lockTimeout(expr string) string {
	return `CASE WHEN set_config('lock_timeout', '100ms', true) IS NOT NULL THEN ` + expr + ` END`
}

// errAlone marks a call its slot statement could not run: the call runs
// again on its own, outside the slots.
var errAlone = errors.New("pgstore: run the call on its own")

// completion is one call of Complete.
type completion struct {
	lease   idem.Lease
	outcome []byte
}

func (s *Store) newBatchers() {
	s.claims = batch.New(s.cfg.BatchSlots, s.cfg.BatchMax, s.claimKind().run)
	s.completions = batch.New(s.cfg.BatchSlots, s.cfg.BatchMax, s.completionKind().run)
}

func (s *Store) claimKind() kind[idem.ClaimParams, idem.ClaimResult] {
	return kind[idem.ClaimParams, idem.ClaimResult]{
		s: s, op: "claim",
		key: func(p idem.ClaimParams) string { return p.Key },
		one: func(ctx context.Context, p idem.ClaimParams) (idem.ClaimResult, error) {
			return s.claimOne(ctx, s.sql.claimTimed, p)
		},
		many: s.claimMany,
	}
}

func (s *Store) completionKind() kind[completion, struct{}] {
	return kind[completion, struct{}]{
		s: s, op: "complete",
		key: func(c completion) string { return c.lease.Key },
		one: func(ctx context.Context, c completion) (struct{}, error) {
			return struct{}{}, s.end(ctx, "complete", c.lease, s.sql.completeTimed, c.outcome)
		},
		many: s.completeMany,
	}
}

// answered translates what a batcher answered when the caller's context
// ended while its call waited for a slot: that comes back bare.
func (s *Store) answered(ctx context.Context, op string, err error) error {
	if err != nil && err == ctx.Err() {
		return s.failed(op, err)
	}
	return err
}

// kind is one kind of call the store batches: how to run one, how to run
// many, and the key that orders them.
type kind[In, Out any] struct {
	s    *Store
	op   string
	key  func(In) string
	one  func(context.Context, In) (Out, error)
	many func(context.Context, []In) ([]batch.Result[Out], error)
}

// run is the kind's batch.Run. A lone call runs with one, which
// translates its errors; several run sorted by key with many, answered in
// the order they came. A lock timeout, data the server rejected in a
// batch, or a batch cut short by its earliest caller's deadline answers
// errAlone.
func (k kind[In, Out]) run(ctx context.Context, ins []In) []batch.Result[Out] {
	out := make([]batch.Result[Out], len(ins))
	if len(ins) == 1 {
		out[0].Val, out[0].Err = k.one(ctx, ins[0])
		if lockTimedOut(out[0].Err) {
			out[0].Err = errAlone
		}
		return out
	}
	order := make([]int, len(ins))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(k.key(ins[a]), k.key(ins[b])) })
	sorted := make([]In, len(ins))
	for i, o := range order {
		sorted[i] = ins[o]
	}
	results, err := k.many(ctx, sorted)
	if err != nil {
		// A deadline here is the earliest caller's (batch.Run), not the
		// others': each runs again under its own.
		if lockTimedOut(err) || badData(err) || errors.Is(err, context.DeadlineExceeded) {
			err = errAlone
		} else {
			err = k.s.failed(k.op, err)
		}
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	for i, o := range order {
		out[o] = results[i]
		if e := out[o].Err; e != nil && !errors.Is(e, idem.ErrLeaseLost) {
			out[o].Err = k.s.failed(k.op, e)
		}
	}
	return out
}

// badData reports whether the server rejected a statement's input (SQLSTATE
// classes 22, data exception, and 23, integrity constraint violation): a
// fault of one call, not of the server.
func badData(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// claimOne runs stmt, a single-key claim statement, retrying lost races.
func (s *Store) claimOne(ctx context.Context, stmt string, p idem.ClaimParams) (cr idem.ClaimResult, err error) {
	err = s.retry(ctx, func() (err error) {
		cr, err = s.claimIn(ctx, s.pool, stmt, p)
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

// completeMany runs the completions of cs in one statement, then notifies
// the waiters of those that someone waits on. A completion whose fence was
// not current gets ErrLeaseLost.
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
				waits *bool // nil: the fence was not current
			)
			if err := rows.Scan(&i, &waits); err != nil {
				return err
			}
			if waits == nil {
				return nil
			}
			out[i-1].Err = nil
			if *waits {
				waited = append(waited, keys[i-1])
			}
			return nil
		}, keys, owners, fences, outcomes)
	})
	if err == nil && len(waited) > 0 {
		s.notify(ctx, "complete", waited...)
	}
	return out, err
}

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
