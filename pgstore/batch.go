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
	"github.com/idemhq/idem/store"
)

// Claims and completions go through one batcher (internal/batch): at
// most BatchSlots batches at once. A call that finds a slot free goes at
// once, alone, in the single-key statement; calls that arrive while all
// are busy go together in the next batch, claims and completions alike:
// the claims in one statement over arrays, the completions in another,
// pipelined in one round trip and one transaction, so that one commit
// carries them all (writeMany).
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
// TestBatchCompletions, TestBatchMixesClaimsAndCompletions), and one that
// loses a race runs again whole (TestBatchRetriesLostRaces).
//
// A batch runs its claims in key order, then its completions in key
// order. A claim that finds a live lease or an outcome locks nothing, so
// two batches can wait for each other only when one takes over an expired
// lease whose holder's completion is in the other; the lock timeout then
// ends the wait long before deadlock detection would, and the calls run
// alone. Each call finds its record by key, however small the table was
// when the plan was made: claims through idem_claim, completions through
// idem_complete (TestStatementsFindRecordsByKey).

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

// write is one call through the batcher: a claim, or when claim is nil a
// completion. Claims and completions share the slots, so that a batch
// carries both kinds, in one transaction and one commit: under load a
// first execution's claim rides with other callers' completions, and its
// completion with their claims.
type write struct {
	claim *store.ClaimParams
	done  completion
}

// completion is one call of Complete.
type completion struct {
	lease   store.Lease
	outcome []byte
}

func (s *Store) newBatcher() {
	s.writes = batch.New(s.cfg.BatchSlots, s.cfg.BatchMax, s.runWrites)
}

// answered translates what the batcher answered when the caller's context
// ended while its call waited for a slot: that comes back bare.
func (s *Store) answered(ctx context.Context, op string, err error) error {
	if err != nil && err == ctx.Err() {
		return s.failed(op, err)
	}
	return err
}

func (w write) key() string {
	if w.claim != nil {
		return w.claim.Key
	}
	return w.done.lease.Key
}

func (w write) op() string {
	if w.claim != nil {
		return "claim"
	}
	return "complete"
}

// runWrites is the batcher's Run. A lone call runs in the single-key
// statement, which translates its errors; several go in writeMany,
// answered in the order they came. A lock timeout, data the server
// rejected in a batch, or a batch cut short by its earliest caller's
// deadline answers errAlone. A completion's answer is its Err alone.
func (s *Store) runWrites(ctx context.Context, ws []write) []batch.Result[store.ClaimResult] {
	out := make([]batch.Result[store.ClaimResult], len(ws))
	if len(ws) == 1 {
		w := ws[0]
		if w.claim != nil {
			out[0].Val, out[0].Err = s.claimOne(ctx, s.sql.claimTimed, *w.claim)
		} else {
			out[0].Err = s.end(ctx, "complete", w.done.lease, s.sql.completeTimed, w.done.outcome)
		}
		if lockTimedOut(out[0].Err) {
			out[0].Err = errAlone
		}
		return out
	}
	if err := s.writeMany(ctx, ws, out); err != nil {
		// A deadline here is the earliest caller's (batch.Run), not the
		// others': each runs again under its own.
		alone := lockTimedOut(err) || badData(err) || errors.Is(err, context.DeadlineExceeded)
		for i, w := range ws {
			out[i] = batch.Result[store.ClaimResult]{Err: errAlone}
			if !alone {
				out[i].Err = s.failed(w.op(), err)
			}
		}
		return out
	}
	for i, w := range ws {
		if e := out[i].Err; e != nil && !errors.Is(e, idem.ErrLeaseLost) {
			out[i].Err = s.failed(w.op(), e)
		}
	}
	return out
}

// writeMany runs ws in one transaction and answers each in out, by
// position. It sends the claims, sorted by key, in one statement and then
// the completions, sorted by key, in another, pipelined in one round trip
// and committed together. Claims go first because a claim of a record
// that another transaction is completing waits for that transaction: had
// two batches each completed a record the other then claimed again (a
// duplicate request, which is what the store is for), each would wait for
// the other (TestCrossingBatchesDoNotWaitForEachOther). A claim of a key
// completed in the same batch finds it in flight; by the time its caller
// looks again the batch has committed, and it finds the outcome. A
// completion whose fence was not current gets ErrLeaseLost. After the
// commit, writeMany notifies the waiters of the records it completed that
// someone waits on. It fails as a whole or not at all.
func (s *Store) writeMany(ctx context.Context, ws []write, out []batch.Result[store.ClaimResult]) error {
	var claims, dones []int // positions in ws, each sorted by key
	for i, w := range ws {
		if w.claim != nil {
			claims = append(claims, i)
		} else {
			dones = append(dones, i)
		}
	}
	byKey := func(a, b int) int { return cmp.Compare(ws[a].key(), ws[b].key()) }
	slices.SortStableFunc(claims, byKey)
	slices.SortStableFunc(dones, byKey)

	var waited []string
	err := s.retry(ctx, func() error {
		waited = nil
		for _, i := range claims {
			out[i] = batch.Result[store.ClaimResult]{Val: unseen(*ws[i].claim)}
		}
		for _, i := range dones {
			out[i] = batch.Result[store.ClaimResult]{Err: idem.ErrLeaseLost}
		}
		// A new pgx.Batch each time: a queued query keeps what it learnt
		// on the connection that first sent it.
		b := &pgx.Batch{}
		if len(claims) > 0 {
			var (
				j int
				r claimRow
			)
			b.Queue(s.sql.claimMany, claimArgs(ws, claims)...).Query(func(rows pgx.Rows) error {
				_, err := pgx.ForEachRow(rows, append([]any{&j}, r.fields()...), func() error {
					i := claims[j-1]
					out[i].Val, out[i].Err = r.result(*ws[i].claim)
					return nil
				})
				return err
			})
		}
		if len(dones) > 0 {
			var (
				j     int
				waits *bool // nil: the fence was not current
			)
			b.Queue(s.sql.completeMany, completionArgs(ws, dones)...).Query(func(rows pgx.Rows) error {
				_, err := pgx.ForEachRow(rows, []any{&j, &waits}, func() error {
					if waits != nil {
						out[dones[j-1]].Err = nil
						if *waits {
							waited = append(waited, ws[dones[j-1]].key())
						}
					}
					return nil
				})
				return err
			})
		}
		return s.pool.SendBatch(ctx, b).Close()
	})
	if err == nil && len(waited) > 0 {
		s.notify(ctx, "complete", waited...)
	}
	return err
}

// completionArgs are completeMany's arguments for the completions at
// positions at of ws.
func completionArgs(ws []write, at []int) []any {
	keys, owners := make([]string, len(at)), make([]string, len(at))
	fences, outcomes := make([]int64, len(at)), make([][]byte, len(at))
	for j, i := range at {
		c := ws[i].done
		keys[j], owners[j], fences[j], outcomes[j] = c.lease.Key, c.lease.Owner, c.lease.Fence, c.outcome
	}
	return []any{keys, owners, fences, outcomes}
}

// claimArgs are claimMany's arguments for the claims at positions at of
// ws.
func claimArgs(ws []write, at []int) []any {
	keys, owners, fingerprints := make([]string, len(at)), make([]string, len(at)), make([]string, len(at))
	leases, retentions := make([]int64, len(at)), make([]int64, len(at))
	for j, i := range at {
		p := ws[i].claim
		keys[j], owners[j], fingerprints[j] = p.Key, p.Owner, p.Fingerprint
		leases[j], retentions[j] = p.LeaseTTL.Milliseconds(), p.Retention.Milliseconds()
	}
	return []any{keys, owners, fingerprints, leases, retentions}
}

// badData reports whether the server rejected a statement's input (SQLSTATE
// classes 22, data exception, and 23, integrity constraint violation): a
// fault of one call, not of the server.
func badData(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// claimOne runs stmt, a single-key claim statement, retrying lost races.
func (s *Store) claimOne(ctx context.Context, stmt string, p store.ClaimParams) (cr store.ClaimResult, err error) {
	err = s.retry(ctx, func() (err error) {
		cr, err = s.claimIn(ctx, s.pool, stmt, p)
		return err
	})
	if err != nil {
		return store.ClaimResult{}, s.failed("claim", err)
	}
	return cr, nil
}
