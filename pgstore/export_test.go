package pgstore

import (
	"context"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/batch"
)

// ClaimBatch and CompleteBatch run calls as one batch, as a batcher does
// with calls that waited together. A call answered ErrAlone would run
// again on its own.
func (s *Store) ClaimBatch(ctx context.Context, ps []idem.ClaimParams) ([]idem.ClaimResult, []error) {
	return split(s.claimKind().run(ctx, ps))
}

func (s *Store) CompleteBatch(ctx context.Context, ls []idem.Lease, outcomes [][]byte) []error {
	cs := make([]completion, len(ls))
	for i := range ls {
		cs[i] = completion{ls[i], outcomes[i]}
	}
	_, errs := split(s.completionKind().run(ctx, cs))
	return errs
}

var ErrAlone = errAlone

func split[T any](rs []batch.Result[T]) ([]T, []error) {
	vals, errs := make([]T, len(rs)), make([]error, len(rs))
	for i, r := range rs {
		vals[i], errs[i] = r.Val, r.Err
	}
	return vals, errs
}

// Arrays is a Store whose claims and completions always take the
// statements over arrays, each call a batch of its own.
type Arrays struct{ *Store }

func (a Arrays) Claim(ctx context.Context, p idem.ClaimParams) (idem.ClaimResult, error) {
	ctx, cancel := a.op(ctx)
	defer cancel()
	rs, err := a.claimMany(ctx, []idem.ClaimParams{p})
	if lockTimedOut(err) { // as a batch's call would, it runs again alone
		return a.Store.Claim(ctx, p)
	}
	if err == nil {
		err = rs[0].Err
	}
	if err != nil {
		return idem.ClaimResult{}, a.failed("claim", err)
	}
	return rs[0].Val, nil
}

func (a Arrays) Complete(ctx context.Context, l idem.Lease, outcome []byte) error {
	ctx, cancel := a.op(ctx)
	defer cancel()
	rs, err := a.completeMany(ctx, []completion{{l, outcome}})
	switch {
	case lockTimedOut(err):
		return a.Store.Complete(ctx, l, outcome)
	case err != nil:
		return a.failed("complete", err)
	case rs[0].Err == idem.ErrLeaseLost:
		return rs[0].Err
	}
	return nil
}

// Statements are the SQL of the claim path, by name, for tests that run
// them by hand.
func (s *Store) Statements() map[string]string {
	return map[string]string{
		"claim": s.sql.claim, "claimMany": s.sql.claimMany,
		"complete": s.sql.complete, "completeMany": s.sql.completeMany,
	}
}
